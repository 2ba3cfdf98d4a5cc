//! Formats from outside the store, turned into artifacts and typed records:
//! HDF5 files with their structure and chunk index (`formats::hdf5`,
//! feature `hdf5`; read back chunk by chunk through `formats::h5read`,
//! feature `h5read`, which needs no C library) and RVLS, the learning-store format of the seeds
//! (`formats::rvls`, feature `json`). This crate calls the records crate and the engine (`asl-core`).

#[cfg(feature = "h5read")]
pub mod h5read;
#[cfg(feature = "hdf5")]
pub mod hdf5;
#[cfg(feature = "yaml")]
pub mod overlay;
#[cfg(feature = "json")]
pub mod rvls;
pub mod template;
