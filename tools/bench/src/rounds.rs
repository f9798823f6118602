//! The rounds: the schedule of the rows whose runs are interleaved instead of run back to back.
//!
//! Each group of rows is set up once (its files, pools and views stay alive across the rounds);
//! round 1 then runs every group once, in the order given, round 2 again, and so on, so that a
//! slow period of the machine (another program's load, lasting seconds) covers one round of
//! every row rather than all the runs of one row. A group whose row has more runs than there are
//! rounds runs them spread as evenly as possible over the rounds ([`runs_in_round`]).
//!
//! Owns the scheduler and the bookkeeping of a group's first error (a group whose run failed runs
//! no more rounds; the others go on). Must never: time anything itself, drop or reorder a run, or
//! let one group's error end another's runs. No `unsafe`.

use crate::progress;

/// A group of rows whose runs the rounds interleave.
pub trait Interleaved {
    /// This group's runs in round `round` (counted from 0) of `rounds`.
    fn run_round(&mut self, round: usize, rounds: usize) -> Result<(), String>;
}

/// How many of `total` runs fall in round `round` of `rounds`: `total / rounds` each, and one more
/// in each of the first `total % rounds` rounds, so the rounds hold every run exactly once.
pub fn runs_in_round(total: usize, rounds: usize, round: usize) -> usize {
    total / rounds + usize::from(round < total % rounds)
}

/// A group in the rounds: its setup (or why it has none), and the first error of its runs. The
/// setup is kept after a failed run, so that [`Group::finish`] still removes what it made.
pub struct Group<S> {
    setup: Result<S, String>,
    failed: Option<String>,
}

impl<S> Group<S> {
    /// A group from its setup (an `Err` joins no round and is its result).
    pub fn new(setup: Result<S, String>) -> Group<S> {
        Group { setup, failed: None }
    }

    /// The group's result: `finish` cleans the setup up and gives its times; the setup's error, or
    /// else the first error of a run, wins over them.
    pub fn finish<M>(self, finish: impl FnOnce(S) -> Result<M, String>) -> Result<M, String> {
        let done = finish(self.setup?);
        match self.failed {
            Some(e) => Err(e),
            None => done,
        }
    }
}

/// One group as the scheduler sees it.
pub trait Slot {
    /// Runs the group's share of round `round`, unless the group has no setup or failed before.
    fn run_round(&mut self, round: usize, rounds: usize);
}

impl<S: Interleaved> Slot for Group<S> {
    fn run_round(&mut self, round: usize, rounds: usize) {
        if self.failed.is_some() {
            return;
        }
        if let Ok(setup) = &mut self.setup {
            if let Err(e) = setup.run_round(round, rounds) {
                self.failed = Some(e);
            }
        }
    }
}

/// Runs `rounds` rounds: in each, every group in `groups` runs its share, in the order given.
pub fn run_rounds(what: &str, rounds: usize, groups: &mut [&mut dyn Slot]) {
    for round in 0..rounds {
        progress(&format!("{what}: round {} of {rounds}", round + 1));
        for group in groups.iter_mut() {
            group.run_round(round, rounds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_round_spreads_every_run_exactly_once() {
        for total in 0..60 {
            for rounds in 1..9 {
                let shares: Vec<usize> =
                    (0..rounds).map(|round| runs_in_round(total, rounds, round)).collect();
                assert_eq!(shares.iter().sum::<usize>(), total, "{total} runs over {rounds} rounds");
                let (least, most) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(most - least <= 1, "{total} runs over {rounds} rounds: {shares:?}");
            }
        }
        assert_eq!((0..5).map(|r| runs_in_round(50, 5, r)).collect::<Vec<_>>(), [10; 5]);
        assert_eq!((0..3).map(|r| runs_in_round(5, 3, r)).collect::<Vec<_>>(), [2, 2, 1]);
    }

    /// Records which group ran in which round, and fails in the round it is told to.
    struct Log<'a> {
        name: char,
        fail_in: Option<usize>,
        log: &'a std::cell::RefCell<String>,
    }

    impl Interleaved for Log<'_> {
        fn run_round(&mut self, round: usize, _rounds: usize) -> Result<(), String> {
            self.log.borrow_mut().push(self.name);
            if self.fail_in == Some(round) {
                return Err(format!("{} failed in round {round}", self.name));
            }
            Ok(())
        }
    }

    #[test]
    fn rounds_run_each_group_once_per_round_in_order_and_a_failed_group_stops_alone() {
        let log = std::cell::RefCell::new(String::new());
        let mut a = Group::new(Ok(Log { name: 'a', fail_in: None, log: &log }));
        let mut b = Group::new(Ok(Log { name: 'b', fail_in: Some(1), log: &log }));
        let mut c: Group<Log> = Group::new(Err("no setup".to_string()));
        let mut d = Group::new(Ok(Log { name: 'd', fail_in: None, log: &log }));
        run_rounds("test", 3, &mut [&mut a, &mut b, &mut c, &mut d]);
        assert_eq!(*log.borrow(), "abdabdad");
        let mut cleaned = String::new();
        let mut finish = |name: char| {
            cleaned.push(name);
            Ok(name)
        };
        assert_eq!(a.finish(|s| finish(s.name)), Ok('a'));
        assert_eq!(b.finish(|s| finish(s.name)), Err("b failed in round 1".to_string()));
        assert_eq!(c.finish(|s| finish(s.name)), Err("no setup".to_string()));
        assert_eq!(d.finish(|s| finish(s.name)), Ok('d'));
        assert_eq!(cleaned, "abd", "a failed group's setup is still cleaned up; a missing one is not");
    }
}
