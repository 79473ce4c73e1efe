//! What the page and the API may ask for: the limits and checks shared by the
//! preview's settings and picture requests. The element's own limits are read
//! from the element, not repeated here.

use gst::glib;
use gst::prelude::*;
use samclipseg::Threshold;

/// Largest picture accepted, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;
/// Largest picture request: the form around the picture needs a little more
/// than the picture.
pub const MAX_FORM_BYTES: usize = MAX_UPLOAD_BYTES + 64 * 1024;
/// Largest picture side accepted, in pixels.
pub const MAX_SIDE: u32 = 8192;
/// The studio's smoothness levels 1-5 map to the element's odd closing
/// kernels 1 (off), 3, 5, 7, 9.
pub const MAX_SMOOTHNESS_LEVEL: u32 = 5;
/// Longest prompt the page may set (the element caps phrases itself).
const MAX_PROMPT_CHARS: usize = 2000;

pub fn smoothness_kernel(level: u32) -> u32 {
    2 * level.clamp(1, MAX_SMOOTHNESS_LEVEL) - 1
}

/// A threshold the page or a request names: a fixed value in 0-1.
pub fn check_threshold(t: f32) -> Result<Threshold, String> {
    Threshold::from_option(Some(t))
        .ok_or_else(|| format!("threshold {t} is out of range: expected 0 to 1"))
}

pub fn check_smoothness(level: u32) -> Result<(), String> {
    if (1..=MAX_SMOOTHNESS_LEVEL).contains(&level) {
        Ok(())
    } else {
        Err(format!(
            "smoothness {level} is out of range: expected 1 (off) to {MAX_SMOOTHNESS_LEVEL}"
        ))
    }
}

pub fn check_prompt(p: &str, field: &str) -> Result<(), String> {
    if p.chars().count() > MAX_PROMPT_CHARS {
        return Err(format!(
            "{field} is longer than {MAX_PROMPT_CHARS} characters"
        ));
    }
    if p.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("{field} holds control characters"));
    }
    Ok(())
}

/// `max_instances` against the element's own limit (`limit`, from
/// [`element_max_instances`]); 0 is unlimited.
pub fn check_max_instances(m: u32, limit: u32) -> Result<(), String> {
    if m <= limit {
        Ok(())
    } else {
        Err(format!(
            "max_instances {m} is out of range: expected 0 (unlimited) to {limit}"
        ))
    }
}

/// The largest `max-instances` the element takes: its ParamSpec's maximum.
pub fn element_max_instances(element: &gst::Element) -> Result<u32, String> {
    element
        .find_property("max-instances")
        .and_then(|p| p.downcast::<glib::ParamSpecUInt>().ok())
        .map(|p| p.maximum())
        .ok_or_else(|| "the samclipseg element has no unsigned max-instances property".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_fixed_values_in_0_1() {
        assert_eq!(check_threshold(0.5), Ok(Threshold::Fixed(0.5)));
        for bad in [-0.1, -1.0, 1.5, f32::NAN, f32::INFINITY] {
            assert!(check_threshold(bad).unwrap_err().contains("threshold"));
        }
        assert_eq!(smoothness_kernel(1), 1);
        assert_eq!(smoothness_kernel(5), 9);
        assert!(check_max_instances(1024, 1024).is_ok());
        assert!(
            check_max_instances(1025, 1024)
                .unwrap_err()
                .contains("max_instances 1025")
        );
    }
}
