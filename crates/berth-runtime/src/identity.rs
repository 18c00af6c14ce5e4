//! SKELETON: the process-attributes helper writes this module.
