//! Host pids already alerted on, shared by the kernel path and the `docker top` poll so one
//! process raises one alert.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

pub(crate) type AlertedPids = Arc<Mutex<HashSet<u32>>>;
