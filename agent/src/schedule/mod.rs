//! Runs that come back by themselves: drift correction on a cron schedule
//! ([`run`]), the systemd timer or cron.d entry that schedules `agent
//! apply` ([`timer`]), and the stop signals both loops honour ([`signals`]).

pub mod run;
pub mod signals;
pub mod timer;
