//! Formats from outside the store, turned into artifacts and typed records:
//! so far RVLS, the learning-store format of the seeds (`formats::rvls`,
//! feature `json`). This layer calls the records layer and the store.

#[cfg(feature = "json")]
pub mod rvls;
