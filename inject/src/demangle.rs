//! Kernel names as people read them: CUPTI reports C++ kernels by their mangled symbols
//! (`_ZN2at6native…`); reports show them demangled, without the return type and the
//! parameter list, as Nsight Systems does. Template arguments stay: they tell instances apart.

/// The readable name of kernel symbol `raw` (unchanged when it is not a mangled C++ name).
pub fn display_name(raw: &str) -> String {
    if !raw.starts_with("_Z") {
        return raw.to_owned();
    }
    let Ok(symbol) = cpp_demangle::Symbol::new(raw) else {
        return raw.to_owned();
    };
    let Ok(full) = symbol.demangle() else {
        return raw.to_owned();
    };
    let without_args = strip_parameters(&full);
    without_args
        .strip_prefix("void ")
        .unwrap_or(without_args)
        .to_owned()
}

/// `name` without a trailing parenthesised parameter list.
fn strip_parameters(name: &str) -> &str {
    if !name.ends_with(')') {
        return name;
    }
    let mut depth = 0usize;
    for (i, c) in name.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return name[..i].trim_end();
                }
            }
            _ => {}
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_and_drops_return_type_and_parameters() {
        assert_eq!(display_name("_Z6kernelPfi"), "kernel");
        assert_eq!(
            display_name("_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_11FillFunctorIfEESt5arrayIPcLm1EEEEviT0_T1_"),
            "at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, std::array<char*, (unsigned long)1> >"
        );
        assert_eq!(
            display_name("ampere_sgemm_128x64_nn"),
            "ampere_sgemm_128x64_nn"
        );
        assert_eq!(display_name("_Znot a symbol"), "_Znot a symbol");
    }

    #[test]
    fn keeps_parentheses_inside_the_name() {
        assert_eq!(
            strip_parameters("at::(anonymous namespace)::k<float>(int, float*)"),
            "at::(anonymous namespace)::k<float>"
        );
        assert_eq!(strip_parameters("plain"), "plain");
    }
}
