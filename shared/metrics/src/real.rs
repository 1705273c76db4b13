//! Real numbers in reports: NaN (undefined) is `null` in JSON and an empty CSV cell; infinities are
//! the strings `"inf"` / `"-inf"`; finite values print so that they parse back to the same f64.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An f64 with the report encoding of METRICS.md §18.2.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Real(pub f64);

impl Real {
    pub const NAN: Real = Real(f64::NAN);

    /// The CSV cell: empty for NaN, `inf`/`-inf`, else the shortest round-trip decimal.
    pub fn csv_cell(self) -> String {
        let v = self.0;
        if v.is_nan() {
            String::new()
        } else if v.is_infinite() {
            if v > 0.0 { "inf".into() } else { "-inf".into() }
        } else {
            // serde_json prints the shortest representation that parses back exactly (ryu)
            serde_json::to_string(&v).unwrap_or_default()
        }
    }

    /// Parses a CSV cell written by [`Real::csv_cell`].
    pub fn from_csv_cell(cell: &str) -> Option<Real> {
        match cell.trim() {
            "" => Some(Real::NAN),
            "inf" => Some(Real(f64::INFINITY)),
            "-inf" => Some(Real(f64::NEG_INFINITY)),
            s => s.parse().ok().map(Real),
        }
    }
}

impl From<f64> for Real {
    fn from(v: f64) -> Self {
        Real(v)
    }
}

impl Serialize for Real {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_none()
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "inf" } else { "-inf" })
        } else {
            s.serialize_f64(v)
        }
    }
}

impl<'de> Deserialize<'de> for Real {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Null => Ok(Real::NAN),
            serde_json::Value::Number(n) => Ok(Real(n.as_f64().unwrap_or(f64::NAN))),
            serde_json::Value::String(s) if s == "inf" => Ok(Real(f64::INFINITY)),
            serde_json::Value::String(s) if s == "-inf" => Ok(Real(f64::NEG_INFINITY)),
            other => Err(serde::de::Error::custom(format!("not a real: {other}"))),
        }
    }
}

/// Mean that is NaN if any value is NaN (and propagates infinities).
pub fn mean_strict(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Mean of the non-NaN values; NaN if there are none.
pub fn nan_mean(values: &[f64]) -> f64 {
    let kept: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if kept.is_empty() {
        f64::NAN
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_special_values() {
        let v = vec![Real(f64::NAN), Real(f64::INFINITY), Real(-0.1), Real(1.0)];
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"[null,"inf",-0.1,1.0]"#
        );
        let back: Vec<Real> = serde_json::from_str(r#"[null,"inf",-0.1,1.0]"#).unwrap();
        assert!(back[0].0.is_nan());
        assert_eq!(&back[1..], &v[1..]);
        assert_eq!(Real(f64::NAN).csv_cell(), "");
        assert_eq!(Real(f64::NEG_INFINITY).csv_cell(), "-inf");
        let x = 0.1 + 0.2;
        assert_eq!(Real::from_csv_cell(&Real(x).csv_cell()), Some(Real(x)));
    }
}
