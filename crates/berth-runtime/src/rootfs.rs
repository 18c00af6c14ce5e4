//! SKELETON: the process helper writes this module.
