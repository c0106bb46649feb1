//! The minimum transfer rate of a registry response: a registry that drip-feeds a blob (one
//! byte a second never trips a per-read timeout) is cut off once a whole window passes with
//! fewer bytes than the rate asks for, with an error naming the registry and what was read.

use std::io::Read;
use std::time::{Duration, Instant};

/// The slowest transfer a registry read may make: at least `bytes_per_sec` on average over
/// every `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes per second, averaged over `window`; 0 turns the rule off.
    pub bytes_per_sec: u64,
    /// How long the average is taken over.
    pub window: Duration,
}

impl Default for MinRate {
    /// 2 KiB/s over 30 s: 60 KiB every 30 s.
    fn default() -> Self {
        MinRate {
            bytes_per_sec: 2048,
            window: Duration::from_secs(30),
        }
    }
}

impl MinRate {
    /// `OCIBOOT_REGISTRY_MIN_RATE` (bytes per second, 0 for none) and
    /// `OCIBOOT_REGISTRY_RATE_WINDOW` (seconds) over the defaults.
    pub fn from_env() -> Self {
        let num = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let d = MinRate::default();
        MinRate {
            bytes_per_sec: num("OCIBOOT_REGISTRY_MIN_RATE").unwrap_or(d.bytes_per_sec),
            window: num("OCIBOOT_REGISTRY_RATE_WINDOW")
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .unwrap_or(d.window),
        }
    }

    /// Bytes a whole window must bring.
    fn per_window(&self) -> u64 {
        self.bytes_per_sec
            .saturating_mul(self.window.as_secs().max(1))
    }
}

/// A reader that fails with [`std::io::ErrorKind::TimedOut`] when a window passes with fewer
/// bytes than the [`MinRate`] asks for. `what` (registry and blob) is in the message.
pub struct RateReader<R> {
    inner: R,
    rate: MinRate,
    what: String,
    window_start: Instant,
    in_window: u64,
    total: u64,
}

impl<R: Read> RateReader<R> {
    /// Watch `inner`; `what` names the registry and the blob for the error.
    pub fn new(inner: R, rate: MinRate, what: String) -> Self {
        RateReader {
            inner,
            rate,
            what,
            window_start: Instant::now(),
            in_window: 0,
            total: 0,
        }
    }

    fn check(&mut self) -> std::io::Result<()> {
        if self.rate.bytes_per_sec == 0 {
            return Ok(());
        }
        let elapsed = self.window_start.elapsed();
        if elapsed < self.rate.window {
            return Ok(());
        }
        let need = self.rate.per_window();
        if self.in_window < need {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{}: too slow: {} bytes in the last {} s (at least {} B/s needed, \
                     OCIBOOT_REGISTRY_MIN_RATE), {} bytes received in all",
                    self.what,
                    self.in_window,
                    elapsed.as_secs(),
                    self.rate.bytes_per_sec,
                    self.total
                ),
            ));
        }
        self.window_start = Instant::now();
        self.in_window = 0;
        Ok(())
    }
}

impl<R: Read> Read for RateReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.in_window += n as u64;
        self.total += n as u64;
        if n > 0 {
            self.check()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives one byte per read, sleeping `pause` before each.
    struct Drip(Duration);
    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.0);
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_drip_is_cut_off_after_one_window_naming_what_was_read() {
        let rate = MinRate {
            bytes_per_sec: 100,
            window: Duration::from_secs(1),
        };
        let t = Instant::now();
        let mut r = RateReader::new(
            Drip(Duration::from_millis(50)),
            rate,
            "reg/os:v1: blob sha256:ab".into(),
        );
        let mut sink = Vec::new();
        let e = r.read_to_end(&mut sink).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let m = e.to_string();
        assert!(
            m.contains("reg/os:v1: blob sha256:ab") && m.contains("too slow"),
            "{m}"
        );
    }

    #[test]
    fn a_fast_enough_stream_and_a_rule_turned_off_read_to_the_end() {
        let rate = MinRate {
            bytes_per_sec: 0,
            window: Duration::from_secs(1),
        };
        let mut r = RateReader::new(Drip(Duration::from_millis(1)).take(50), rate, "x".into());
        assert_eq!(std::io::copy(&mut r, &mut std::io::sink()).unwrap(), 50);
        // About 1000 B/s against 100 B/s asked for: windows pass and start again.
        let rate = MinRate {
            bytes_per_sec: 100,
            window: Duration::from_secs(1),
        };
        let mut r = RateReader::new(Drip(Duration::from_millis(1)).take(1500), rate, "x".into());
        assert_eq!(std::io::copy(&mut r, &mut std::io::sink()).unwrap(), 1500);
    }
}
