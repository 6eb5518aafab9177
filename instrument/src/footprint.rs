//! The footprint of GPU energy: energy at the facility, carbon and water, from factors the user
//! gives (nothing is printed for a factor left unset).
//!
//! - **Facility energy** = GPU energy × PUE (power usage effectiveness: facility energy over IT
//!   energy, ≥ 1).
//! - **Carbon** = facility energy × carbon intensity (g CO2e per kWh of electricity drawn).
//! - **Water** = GPU (IT) energy × WUE (L per kWh of IT energy, as The Green Grid defines
//!   site water usage effectiveness).
//!
//! It covers the GPU only: the host's CPUs, memory and network are not measured.

use serde::{Deserialize, Serialize};

/// Joules in a kilowatt-hour.
const J_PER_KWH: f64 = 3.6e6;

/// Environment variable: carbon intensity, g CO2e/kWh.
pub const ENV_CARBON: &str = "WATTLENS_CARBON_INTENSITY";
/// Environment variable: power usage effectiveness.
pub const ENV_PUE: &str = "WATTLENS_PUE";
/// Environment variable: water usage effectiveness, L/kWh.
pub const ENV_WUE: &str = "WATTLENS_WUE";

/// Why the footprint factors could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FootprintError {
    /// A value is not a number in its range.
    #[error("{name}={value} is not a valid {what}; give a number such as {example}")]
    Bad {
        /// Where it came from (a flag, variable or config key).
        name: String,
        /// The value.
        value: String,
        /// What it should be.
        what: &'static str,
        /// A valid value.
        example: &'static str,
    },
    /// A config file line is not `key = value` of a known key.
    #[error("{path}, line {line}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// Its line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The conversion factors; `None` where unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    /// Carbon intensity of the electricity, g CO2e/kWh.
    pub carbon_g_per_kwh: Option<f64>,
    /// Power usage effectiveness (≥ 1).
    pub pue: Option<f64>,
    /// Water usage effectiveness, L/kWh of IT energy.
    pub wue_l_per_kwh: Option<f64>,
}

/// The footprint of some GPU energy; `None` where its factor is unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// GPU energy, Wh.
    pub gpu_wh: f64,
    /// Energy at the facility (GPU × PUE), Wh.
    pub facility_wh: Option<f64>,
    /// Carbon, g CO2e (facility energy × intensity; GPU energy where PUE is unset).
    pub co2e_g: Option<f64>,
    /// Water, L.
    pub water_l: Option<f64>,
}

/// One factor, checked: finite and at least `min`.
fn factor(
    name: &str,
    value: &str,
    (what, min, example): (&'static str, f64, &'static str),
) -> Result<f64, FootprintError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= min)
        .ok_or_else(|| FootprintError::Bad {
            name: name.to_owned(),
            value: value.to_owned(),
            what,
            example,
        })
}

const CARBON: (&str, f64, &str) = ("carbon intensity (g CO2e/kWh, 0 or more)", 0.0, "400");
const PUE: (&str, f64, &str) = ("PUE (1 or more)", 1.0, "1.2");
const WUE: (&str, f64, &str) = ("WUE (L/kWh, 0 or more)", 0.0, "1.8");

impl Factors {
    /// Whether any factor is set.
    pub fn any(&self) -> bool {
        self.carbon_g_per_kwh.is_some() || self.pue.is_some() || self.wue_l_per_kwh.is_some()
    }

    /// Read a config file's text (`path` names it in errors): `key = value` lines of
    /// `carbon_intensity`, `pue`, `wue`; `#` starts a comment.
    ///
    /// # Errors
    /// [`FootprintError`] for an unknown key, a line without `=`, or a bad value.
    pub fn from_config(text: &str, path: &str) -> Result<Self, FootprintError> {
        let mut f = Factors::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |reason: String| FootprintError::Config {
                path: path.to_owned(),
                line: n + 1,
                reason,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err("expected `key = value`".to_owned()))?;
            let key = key.trim();
            match key {
                "carbon_intensity" => f.carbon_g_per_kwh = Some(factor(key, value, CARBON)?),
                "pue" => f.pue = Some(factor(key, value, PUE)?),
                "wue" => f.wue_l_per_kwh = Some(factor(key, value, WUE)?),
                other => {
                    return Err(err(format!(
                        "unknown key {other:?}; use carbon_intensity, pue or wue"
                    )))
                }
            }
        }
        Ok(f)
    }

    /// Factors from the environment (`var` reads it): [`ENV_CARBON`], [`ENV_PUE`], [`ENV_WUE`].
    ///
    /// # Errors
    /// [`FootprintError::Bad`] for a value that is not a number in its range.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, FootprintError> {
        let read = |name: &str, spec| var(name).map(|v| factor(name, &v, spec)).transpose();
        Ok(Factors {
            carbon_g_per_kwh: read(ENV_CARBON, CARBON)?,
            pue: read(ENV_PUE, PUE)?,
            wue_l_per_kwh: read(ENV_WUE, WUE)?,
        })
    }

    /// Factors from flags (`--carbon-intensity`, `--pue`, `--wue`), checked.
    ///
    /// # Errors
    /// [`FootprintError::Bad`] for a value out of its range.
    pub fn from_flags(
        carbon: Option<f64>,
        pue: Option<f64>,
        wue: Option<f64>,
    ) -> Result<Self, FootprintError> {
        let check = |name: &str, v: Option<f64>, spec| {
            v.map(|x| factor(name, &x.to_string(), spec)).transpose()
        };
        Ok(Factors {
            carbon_g_per_kwh: check("--carbon-intensity", carbon, CARBON)?,
            pue: check("--pue", pue, PUE)?,
            wue_l_per_kwh: check("--wue", wue, WUE)?,
        })
    }

    /// Each factor from the first of `self`, `then` that sets it: flags over the environment
    /// over a config file.
    pub fn or(self, then: Factors) -> Factors {
        Factors {
            carbon_g_per_kwh: self.carbon_g_per_kwh.or(then.carbon_g_per_kwh),
            pue: self.pue.or(then.pue),
            wue_l_per_kwh: self.wue_l_per_kwh.or(then.wue_l_per_kwh),
        }
    }

    /// The footprint of `gpu_mj` of GPU energy.
    pub fn of(&self, gpu_mj: f64) -> Footprint {
        let gpu_kwh = gpu_mj * 1e-3 / J_PER_KWH;
        let facility_kwh = self.pue.map(|p| gpu_kwh * p);
        Footprint {
            gpu_wh: gpu_kwh * 1e3,
            facility_wh: facility_kwh.map(|k| k * 1e3),
            co2e_g: self
                .carbon_g_per_kwh
                .map(|c| c * facility_kwh.unwrap_or(gpu_kwh)),
            water_l: self.wue_l_per_kwh.map(|w| w * gpu_kwh),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_follow_the_definitions() {
        let f = Factors {
            carbon_g_per_kwh: Some(400.0),
            pue: Some(1.2),
            wue_l_per_kwh: Some(1.8),
        };
        // 3.6 MJ is 1 kWh of GPU energy.
        let fp = f.of(3.6e9);
        assert!((fp.gpu_wh - 1000.0).abs() < 1e-9);
        assert!((fp.facility_wh.unwrap() - 1200.0).abs() < 1e-9);
        assert!(
            (fp.co2e_g.unwrap() - 480.0).abs() < 1e-9,
            "1.2 kWh at 400 g/kWh"
        );
        assert!(
            (fp.water_l.unwrap() - 1.8).abs() < 1e-9,
            "per kWh of IT energy"
        );
        // Without a PUE, carbon is of the GPU's energy alone; unset factors give nothing.
        let c = Factors {
            carbon_g_per_kwh: Some(100.0),
            ..Factors::default()
        };
        let fp = c.of(3.6e9);
        assert_eq!(fp.facility_wh, None);
        assert_eq!(fp.water_l, None);
        assert!((fp.co2e_g.unwrap() - 100.0).abs() < 1e-9);
        assert!(!Factors::default().any());
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_config_file() {
        let file = Factors::from_config(
            "# site\ncarbon_intensity = 300\npue=1.5\n\nwue = 2 # L/kWh\n",
            "f",
        )
        .unwrap();
        let env = Factors::from_env(|k| (k == ENV_PUE).then(|| "1.1".to_owned())).unwrap();
        let flags = Factors::from_flags(Some(50.0), None, None).unwrap();
        let f = flags.or(env).or(file);
        assert_eq!(f.carbon_g_per_kwh, Some(50.0));
        assert_eq!(f.pue, Some(1.1));
        assert_eq!(f.wue_l_per_kwh, Some(2.0));
    }

    #[test]
    fn bad_values_and_lines_are_named() {
        let e = Factors::from_flags(None, Some(0.5), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("--pue=0.5 is not a valid PUE (1 or more)"),
            "{e}"
        );
        let e = Factors::from_env(|k| (k == ENV_CARBON).then(|| "lots".to_owned())).unwrap_err();
        assert!(
            e.to_string().contains("WATTLENS_CARBON_INTENSITY=lots"),
            "{e}"
        );
        let e = Factors::from_config("pue = 1.2\ncarbon = 3\n", "site.conf").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("site.conf, line 2: unknown key \"carbon\""),
            "{e}"
        );
        let e = Factors::from_config("wue\n", "c").unwrap_err();
        assert!(e.to_string().contains("expected `key = value`"), "{e}");
        assert!(Factors::from_flags(None, None, Some(f64::NAN)).is_err());
    }
}
