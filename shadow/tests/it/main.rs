//! Integration tests of ficus-shadow, one binary: real hyper servers on 127.0.0.1:0 stand in
//! for the legacy and new backends, and the test plays the proxy's side of the seam.

mod mirror;
mod noise;
mod redaction;
mod reports;
mod support;
mod taskapp;
