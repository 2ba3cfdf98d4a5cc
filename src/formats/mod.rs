//! Formats from outside the store, turned into artifacts and typed records:
//! HDF5 files with their structure and chunk index (`formats::hdf5`,
//! feature `hdf5`) and RVLS, the learning-store format of the seeds
//! (`formats::rvls`, feature `json`). This layer calls the records layer and the store.

#[cfg(feature = "hdf5")]
pub mod hdf5;
#[cfg(feature = "json")]
pub mod rvls;
