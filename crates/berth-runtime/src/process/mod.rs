//! SKELETON: the process helper writes the creation dance here.
