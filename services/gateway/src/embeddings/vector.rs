//! Vector encodings and sizes.
//!
//! `base64` is OpenAI's: the little-endian bytes of each float32, in order,
//! standard alphabet with padding. A vector longer than asked for is cut to
//! its first `dimensions` values and scaled back to unit length, which is
//! how OpenAI's v3 models shorten theirs; vectors a provider returns at
//! other than unit length (Gemini below 3,072 dimensions) are scaled too,
//! so every vector the gateway returns has length 1.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// How far from 1 a vector's length may be before it is renormalised.
const UNIT_TOLERANCE: f64 = 1e-4;

/// The base64 of `vector`'s little-endian float32 bytes.
pub fn to_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// The floats of an OpenAI base64 vector.
pub fn from_base64(text: &str) -> Result<Vec<f32>, String> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| format!("bad base64 vector: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "a base64 vector of {} bytes is not a list of float32",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// `vector` cut to `keep` values and at unit length; an error if the
/// provider returned fewer values than that.
pub fn fit(mut vector: Vec<f32>, keep: u32) -> Result<Vec<f32>, String> {
    let keep = keep as usize;
    if vector.len() < keep {
        return Err(format!(
            "the provider returned {} dimensions, fewer than the {keep} asked for",
            vector.len()
        ));
    }
    vector.truncate(keep);
    let norm = vector
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && (norm - 1.0).abs() > UNIT_TOLERANCE {
        for v in &mut vector {
            *v = (f64::from(*v) / norm) as f32;
        }
    }
    Ok(vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn base64_is_little_endian_float32_and_round_trips() {
        // 1.0f32 is 00 00 80 3f in little-endian order.
        assert_eq!(to_base64(&[1.0]), "AACAPw==");
        let v = vec![0.25, -1.5, 3.0e-8, f32::MIN_POSITIVE];
        assert_eq!(from_base64(&to_base64(&v)).unwrap(), v);
        assert!(from_base64("AACA")
            .unwrap_err()
            .contains("not a list of float32"));
        assert!(from_base64("!!").is_err());
    }

    #[test]
    fn truncation_renormalises_and_unit_vectors_stay_exact() {
        let v = vec![0.6, 0.0, 0.8, 0.0];
        let cut = fit(v.clone(), 2).unwrap();
        assert_eq!(cut, vec![1.0, 0.0]);
        assert!((norm(&fit(vec![3.0, 4.0, 12.0], 3).unwrap()) - 1.0).abs() < 1e-6);
        // Already unit length: returned bit for bit.
        assert_eq!(fit(v.clone(), 4).unwrap(), v);
        assert!(fit(v, 5).unwrap_err().contains("fewer than the 5"));
        assert_eq!(fit(vec![0.0, 0.0], 1).unwrap(), vec![0.0]);
    }
}
