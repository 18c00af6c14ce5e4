//! Unit tests of the network model over the fake backend (no root, no kernel).
