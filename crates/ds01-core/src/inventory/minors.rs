//! `/proc/driver/nvidia-caps/mig-minors`: which `nvidia-cap<N>` node grants
//! access to which GPU instance and compute instance.

use std::collections::HashMap;

/// Where the driver publishes the table.
pub const PROC_PATH: &str = "/proc/driver/nvidia-caps/mig-minors";

// The driver's fixed layout: per GPU 15 GPU instances, each with its own
// access entry followed by 8 compute instances; minors 1 and 2 are
// `config` and `monitor`.
const MAX_GPUS: u32 = 32;
const GI_PER_GPU: u32 = 15;
const CI_PER_GI: u32 = 8;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigMinors(HashMap<String, u32>);

impl MigMinors {
    /// Parses the `name minor` lines of the proc file.
    pub fn parse(text: &str) -> Result<MigMinors, String> {
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (name, minor) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("line {}: expected \"<name> <minor>\"", n + 1))?;
            let minor = minor
                .trim()
                .parse()
                .map_err(|_| format!("line {}: minor {minor:?} is not a number", n + 1))?;
            map.insert(name.to_string(), minor);
        }
        Ok(MigMinors(map))
    }

    /// The table the driver writes, for the simulated inventory.
    pub fn standard() -> MigMinors {
        let mut map = HashMap::from([("config".to_string(), 1), ("monitor".to_string(), 2)]);
        let mut minor = 3;
        for gpu in 0..MAX_GPUS {
            for gi in 0..GI_PER_GPU {
                map.insert(format!("gpu{gpu}/gi{gi}/access"), minor);
                minor += 1;
                for ci in 0..CI_PER_GI {
                    map.insert(format!("gpu{gpu}/gi{gi}/ci{ci}/access"), minor);
                    minor += 1;
                }
            }
        }
        MigMinors(map)
    }

    /// The minor for a name. `config` and `monitor` are never handed out,
    /// so asking for them is refused here too.
    pub fn get(&self, name: &str) -> Option<u32> {
        match name {
            "config" | "monitor" => None,
            _ => self.0.get(name).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_table_matches_the_driver_layout() {
        let m = MigMinors::standard();
        assert_eq!(m.get("gpu0/gi0/access"), Some(3));
        assert_eq!(m.get("gpu0/gi0/ci0/access"), Some(4));
        assert_eq!(m.get("gpu0/gi2/access"), Some(21));
        assert_eq!(m.get("gpu1/gi0/access"), Some(138));
        assert_eq!(m.get("config"), None);
        assert_eq!(m.get("monitor"), None);
    }

    #[test]
    fn parses_the_proc_file() {
        let m =
            MigMinors::parse("config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\n")
                .unwrap();
        assert_eq!(m.get("gpu0/gi1/ci0/access"), Some(13));
        assert!(MigMinors::parse("gpu0/gi1/access x").is_err());
        assert!(MigMinors::parse("justonefield").is_err());
    }
}
