//! The instance score threshold: the bundle's calibrated default or a fixed
//! value. The element, the studio and the examples resolve it here, so a
//! frame, a picture and a command-line run keep the same instances.

use crate::model::bundle::Manifest;

/// Minimum score (sigmoid(query logit) x sigmoid(presence logit)) of an
/// instance.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Threshold {
    /// The bundle's calibrated `decoder.default_threshold` (checked to be in
    /// 0-1 when the bundle loads).
    #[default]
    Bundle,
    /// A value in 0-1.
    Fixed(f32),
}

impl Threshold {
    /// The value that stands for [`Threshold::Bundle`] where a number is
    /// needed (the element's `threshold` property).
    pub const BUNDLE_VALUE: f32 = -1.0;

    /// From a number: 0-1 is fixed, any negative value means the bundle's;
    /// above 1 or NaN is refused.
    pub fn from_value(v: f32) -> Option<Threshold> {
        if (0.0..=1.0).contains(&v) {
            Some(Threshold::Fixed(v))
        } else if v < 0.0 {
            Some(Threshold::Bundle)
        } else {
            None
        }
    }

    /// A fixed value when given (refused outside 0-1), else the bundle's.
    pub fn from_option(v: Option<f32>) -> Option<Threshold> {
        match v {
            None => Some(Threshold::Bundle),
            Some(v) if (0.0..=1.0).contains(&v) => Some(Threshold::Fixed(v)),
            Some(_) => None,
        }
    }

    /// The number [`Threshold::from_value`] takes back.
    pub fn value(self) -> f32 {
        match self {
            Threshold::Bundle => Self::BUNDLE_VALUE,
            Threshold::Fixed(v) => v,
        }
    }

    /// The threshold in effect with this bundle.
    pub fn resolve(self, manifest: &Manifest) -> f32 {
        match self {
            Threshold::Bundle => manifest.decoder.default_threshold,
            Threshold::Fixed(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_map_to_the_bundle_or_a_fixed_value() {
        assert_eq!(Threshold::from_value(-1.0), Some(Threshold::Bundle));
        assert_eq!(Threshold::from_value(-0.5), Some(Threshold::Bundle));
        assert_eq!(Threshold::from_value(0.0), Some(Threshold::Fixed(0.0)));
        assert_eq!(Threshold::from_value(1.0), Some(Threshold::Fixed(1.0)));
        assert_eq!(Threshold::from_value(1.5), None);
        assert_eq!(Threshold::from_value(f32::NAN), None);
        assert_eq!(Threshold::from_option(None), Some(Threshold::Bundle));
        assert_eq!(Threshold::from_option(Some(2.0)), None);
        assert_eq!(Threshold::Bundle.value(), -1.0);
        assert_eq!(Threshold::Fixed(0.3).value(), 0.3);
    }
}
