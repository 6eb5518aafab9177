//! Symbolic cost expressions over a kernel's scalar arguments: built from trip counts, printed
//! as the simplest polynomial that matches them exactly at many points, or verbatim otherwise.

use std::collections::BTreeSet;

/// An integer expression over named symbols.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Const(i64),
    Sym(String),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    /// Floor division.
    Div(Box<Expr>, Box<Expr>),
    /// Ceiling division.
    CeilDiv(Box<Expr>, Box<Expr>),
    Rem(Box<Expr>, Box<Expr>),
    Max(Box<Expr>, Box<Expr>),
}

#[allow(clippy::should_implement_trait)] // builders named for the operation, not operator overloads
impl Expr {
    pub fn add(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            // ceil((x - y)/y) + 1 = ceil(x/y)
            (Expr::CeilDiv(n, d), Expr::Const(1)) if matches!(n.as_ref(), Expr::Sub(_, y) if y == &d) => {
                match *n {
                    Expr::Sub(x, _) => Expr::CeilDiv(x, d),
                    other => Expr::add(Expr::CeilDiv(Box::new(other), d), Expr::Const(1)),
                }
            }
            (Expr::Const(0), e) | (e, Expr::Const(0)) => e,
            (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.saturating_add(y)),
            // (x - c) + c = x
            (Expr::Sub(x, c), d) if *c == d => *x,
            (a, b) => Expr::Add(Box::new(a), Box::new(b)),
        }
    }
    pub fn sub(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (e, Expr::Const(0)) => e,
            (a, b) if a == b => Expr::Const(0),
            (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.saturating_sub(y)),
            (a, b) => Expr::Sub(Box::new(a), Box::new(b)),
        }
    }
    pub fn mul(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::Const(0), _) | (_, Expr::Const(0)) => Expr::Const(0),
            (Expr::Const(1), e) | (e, Expr::Const(1)) => e,
            (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.saturating_mul(y)),
            (a, b) => Expr::Mul(Box::new(a), Box::new(b)),
        }
    }
    pub fn div(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (e, Expr::Const(1)) => e,
            (Expr::Const(x), Expr::Const(y)) if y != 0 => Expr::Const(div_sat(x, y)),
            (a, b) => Expr::Div(Box::new(a), Box::new(b)),
        }
    }
    pub fn ceil_div(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (e, Expr::Const(1)) => e,
            (Expr::Const(x), Expr::Const(y)) if y != 0 => Expr::Const(ceil_div_sat(x, y)),
            (a, b) => Expr::CeilDiv(Box::new(a), Box::new(b)),
        }
    }
    pub fn rem(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::Const(x), Expr::Const(y)) if y != 0 => {
                Expr::Const(x.checked_rem_euclid(y).unwrap_or(0))
            }
            (a, b) => Expr::Rem(Box::new(a), Box::new(b)),
        }
    }
    pub fn max(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::Const(x), Expr::Const(y)) => Expr::Const(x.max(y)),
            (a, b) => Expr::Max(Box::new(a), Box::new(b)),
        }
    }

    /// The symbols the expression mentions.
    pub fn symbols(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::Sym(s) => {
                out.insert(s.clone());
            }
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::CeilDiv(a, b)
            | Expr::Rem(a, b)
            | Expr::Max(a, b) => {
                a.symbols(out);
                b.symbols(out);
            }
        }
    }

    /// Value with each symbol bound by `bind`; division by zero gives zero.
    pub fn eval(&self, bind: &dyn Fn(&str) -> i64) -> i64 {
        match self {
            Expr::Const(c) => *c,
            Expr::Sym(s) => bind(s),
            Expr::Add(a, b) => a.eval(bind).saturating_add(b.eval(bind)),
            Expr::Sub(a, b) => a.eval(bind).saturating_sub(b.eval(bind)),
            Expr::Mul(a, b) => a.eval(bind).saturating_mul(b.eval(bind)),
            Expr::Div(a, b) => {
                let d = b.eval(bind);
                if d == 0 {
                    0
                } else {
                    div_sat(a.eval(bind), d)
                }
            }
            Expr::CeilDiv(a, b) => {
                let d = b.eval(bind);
                if d == 0 {
                    0
                } else {
                    ceil_div_sat(a.eval(bind), d)
                }
            }
            Expr::Rem(a, b) => {
                let d = b.eval(bind);
                if d == 0 {
                    0
                } else {
                    a.eval(bind).checked_rem_euclid(d).unwrap_or(0)
                }
            }
            Expr::Max(a, b) => a.eval(bind).max(b.eval(bind)),
        }
    }

    fn prec(&self) -> u8 {
        match self {
            Expr::Add(..) | Expr::Sub(..) => 1,
            Expr::Mul(..) | Expr::Div(..) | Expr::Rem(..) => 2,
            _ => 3,
        }
    }

    /// Split a sum into (coefficient, term) pairs, merging equal terms.
    fn terms(&self, sign: i64, out: &mut Vec<(i64, Expr)>) {
        match self {
            Expr::Add(a, b) => {
                a.terms(sign, out);
                b.terms(sign, out);
            }
            Expr::Sub(a, b) => {
                a.terms(sign, out);
                b.terms(-sign, out);
            }
            Expr::Mul(a, b) => match (a.as_ref(), b.as_ref()) {
                (Expr::Const(c), t) | (t, Expr::Const(c)) => {
                    push_term(out, sign.saturating_mul(*c), t.clone())
                }
                _ => push_term(out, sign, self.clone()),
            },
            Expr::Const(c) => push_term(out, sign.saturating_mul(*c), Expr::Const(1)),
            _ => push_term(out, sign, self.clone()),
        }
    }

    /// The expression with equal terms of a sum merged (`3*T + 3*T` → `6*T`).
    pub fn merged(&self) -> Expr {
        let mut ts = Vec::new();
        self.terms(1, &mut ts);
        let mut out = Expr::Const(0);
        for (c, t) in ts {
            if c == 0 {
                continue;
            }
            out = Expr::add(out, Expr::mul(Expr::Const(c), t));
        }
        out
    }

    /// The expression verbatim, with as few parentheses as precedence allows.
    pub fn verbatim(&self) -> String {
        let wrap = |e: &Expr, min: u8| {
            if e.prec() < min {
                format!("({})", e.verbatim())
            } else {
                e.verbatim()
            }
        };
        match self {
            Expr::Const(c) => c.to_string(),
            Expr::Sym(s) => s.clone(),
            Expr::Add(a, b) => format!("{} + {}", a.verbatim(), wrap(b, 2)),
            Expr::Sub(a, b) => format!("{} - {}", a.verbatim(), wrap(b, 2)),
            Expr::Mul(a, b) => format!("{}*{}", wrap(a, 2), wrap(b, 3)),
            Expr::Div(a, b) => format!("{}/{}", wrap(a, 2), wrap(b, 3)),
            Expr::Rem(a, b) => format!("{}%{}", wrap(a, 2), wrap(b, 3)),
            Expr::CeilDiv(a, b) => format!("ceil({}/{})", wrap(a, 2), wrap(b, 3)),
            Expr::Max(a, b) => format!("max({}, {})", a.verbatim(), b.verbatim()),
        }
    }

    /// The simplest exact form: a polynomial of degree ≤ 2 with small rational coefficients
    /// when one matches the expression at every probe point, else the verbatim text.
    pub fn simplified(&self) -> String {
        let mut syms = BTreeSet::new();
        self.symbols(&mut syms);
        let syms: Vec<String> = syms.into_iter().collect();
        if syms.is_empty() {
            return self.eval(&|_| 0).to_string();
        }
        if syms.len() > 4 {
            return self.verbatim();
        }
        match fit_polynomial(self, &syms) {
            Some(p) => p,
            None => self.merged().verbatim(),
        }
    }
}

/// `x / y` rounded down (Euclidean), saturating where it overflows (`i64::MIN / -1`).
fn div_sat(x: i64, y: i64) -> i64 {
    x.checked_div_euclid(y).unwrap_or(i64::MAX)
}

/// `x / y` rounded up, saturating where it overflows.
fn ceil_div_sat(x: i64, y: i64) -> i64 {
    x.checked_neg()
        .and_then(|n| n.checked_div_euclid(y))
        .and_then(i64::checked_neg)
        .unwrap_or(if (x < 0) == (y < 0) {
            i64::MAX
        } else {
            i64::MIN
        })
}

fn push_term(out: &mut Vec<(i64, Expr)>, c: i64, t: Expr) {
    match out.iter_mut().find(|(_, e)| *e == t) {
        Some((k, _)) => *k = k.saturating_add(c),
        None => out.push((c, t)),
    }
}

/// Monomials of degree ≤ 2 over `n` symbols: lists of symbol indices.
fn monomials(n: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![]];
    for i in 0..n {
        m.push(vec![i]);
    }
    for i in 0..n {
        for j in i..n {
            m.push(vec![i, j]);
        }
    }
    m
}

/// Deterministic probe values, log-uniform over 1..2^17 and independent per symbol, so that a
/// form that is polynomial only while one symbol dwarfs another is caught.
fn probe(k: usize, s: usize) -> i64 {
    let mut x = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (s as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    let bits = 1 + (x % 17) as u32;
    let mantissa = (x >> 8) % (1u64 << bits);
    (mantissa.max(1) + (1u64 << (bits - 1))) as i64
}

fn fit_polynomial(e: &Expr, syms: &[String]) -> Option<String> {
    let mons = monomials(syms.len());
    let points: Vec<Vec<i64>> = (0..(mons.len() * 2 + 12))
        .map(|k| (0..syms.len()).map(|s| probe(k, s)).collect())
        .collect();
    let value_at =
        |p: &[i64]| e.eval(&|name: &str| syms.iter().position(|s| s == name).map_or(0, |i| p[i]));
    let ys: Vec<f64> = points.iter().map(|p| value_at(p) as f64).collect();
    let row = |p: &[i64]| -> Vec<f64> {
        mons.iter()
            .map(|m| m.iter().map(|&i| p[i] as f64).product::<f64>())
            .collect()
    };
    let coef = least_squares(&points.iter().map(|p| row(p)).collect::<Vec<_>>(), &ys)?;
    // Coefficients are multiples of 1/64 in every cost we emit; round and verify exactly.
    let rounded: Vec<f64> = coef.iter().map(|c| (c * 64.0).round() / 64.0).collect();
    for (p, y) in points.iter().zip(&ys) {
        let v: f64 = row(p).iter().zip(&rounded).map(|(a, c)| a * c).sum();
        if (v - y).abs() > 1e-6 * y.abs().max(1.0) {
            return None;
        }
    }
    let mut terms: Vec<String> = Vec::new();
    for (m, c) in mons.iter().zip(&rounded).rev() {
        if *c == 0.0 {
            continue;
        }
        let name = m
            .iter()
            .map(|&i| syms[i].as_str())
            .collect::<Vec<_>>()
            .join("*");
        let coef = if c.fract() == 0.0 {
            format!("{}", *c as i64)
        } else {
            format!("{c}")
        };
        terms.push(match (name.is_empty(), coef.as_str()) {
            (true, _) => coef,
            (false, "1") => name,
            (false, _) => format!("{coef}*{name}"),
        });
    }
    if terms.is_empty() {
        return Some("0".into());
    }
    Some(terms.join(" + ").replace("+ -", "- "))
}

/// Least-squares solution of `a·x ≈ y` through the normal equations (small systems only).
fn least_squares(a: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let n = a.first()?.len();
    let mut m = vec![vec![0.0; n + 1]; n];
    for (row, &yv) in a.iter().zip(y) {
        for i in 0..n {
            for j in 0..n {
                m[i][j] += row[i] * row[j];
            }
            m[i][n] += row[i] * yv;
        }
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &z| m[x][col].abs().total_cmp(&m[z][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some((0..n).map(|i| m[i][n] / m[i][i]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_division_saturates_instead_of_overflowing() {
        let c = Expr::Const;
        assert_eq!(Expr::ceil_div(c(i64::MIN), c(-1)), c(i64::MAX));
        assert_eq!(Expr::div(c(i64::MIN), c(-1)), c(i64::MAX));
        assert_eq!(Expr::rem(c(i64::MIN), c(-1)), c(0));
        assert_eq!(Expr::ceil_div(c(7), c(2)), c(4));
        assert_eq!(Expr::ceil_div(c(-7), c(2)), c(-3));
        let sym = Expr::CeilDiv(Box::new(Expr::Sym("n".into())), Box::new(c(-1)));
        assert_eq!(sym.eval(&|_| i64::MIN), i64::MAX);
    }

    fn k() -> Expr {
        Expr::Sym("K".into())
    }

    #[test]
    fn an_unrolled_loop_with_remainder_simplifies_to_the_plain_count() {
        // 8 flops per 4-way unrolled iteration, 2 per remainder iteration.
        let main = Expr::mul(Expr::Const(8), Expr::div(k(), Expr::Const(4)));
        let rest = Expr::mul(Expr::Const(2), Expr::rem(k(), Expr::Const(4)));
        assert_eq!(Expr::add(main, rest).simplified(), "2*K");
    }

    #[test]
    fn products_of_two_symbols_and_constants_fit() {
        let e = Expr::add(
            Expr::mul(Expr::Sym("N".into()), Expr::mul(Expr::Const(3), k())),
            Expr::Const(4),
        );
        assert_eq!(e.simplified(), "3*K*N + 4");
    }

    #[test]
    fn a_non_polynomial_form_is_printed_verbatim() {
        let e = Expr::mul(
            Expr::Const(2),
            Expr::ceil_div(Expr::Sym("n".into()), Expr::Sym("blockDim.x".into())),
        );
        assert_eq!(e.simplified(), "2*ceil(n/blockDim.x)");
    }
}
