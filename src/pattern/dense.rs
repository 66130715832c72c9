//! Dense attention as a descriptor: every key (under the causal mask when asked for), no
//! index tensor. It lets code that handles "a pattern" treat dense attention like the others.

use std::borrow::Cow;

use crate::error::Result;
use crate::mask::{ElementMask, SparsePattern};
use crate::shape::AttnShape;
use crate::source::Source;

/// Every key: [`Source::Dense`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dense;

impl SparsePattern for Dense {
    /// Any valid shape is a dense problem.
    fn validate(&self, _shape: &AttnShape) -> Result<()> {
        Ok(())
    }

    fn element_mask(&self, shape: &AttnShape, causal: bool) -> Result<ElementMask> {
        let mut mask = ElementMask::try_empty(shape)?;
        mask.allow_visible(shape, causal);
        Ok(mask)
    }

    fn source(&self, _shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>> {
        Ok(Source::Dense)
    }
}
