//! The maintenance zone's offset: UTC shifted by a number of minutes, so that
//! maintenance work of many installations does not all start at midnight UTC. It comes
//! from configuration ([`MAINTENANCE_OFFSET_VAR`]) when that is valid, otherwise from
//! the database, where the first node stores a random one, as the reference does.
//! A node decides it once ([`Store::maintenance_offset`]) and passes it down.

use crate::store::{Store, StoreResult};

/// The environment variable that configures the offset (minutes, 0–1439). The engine
/// never reads it: an application or the `warren` command reads it once and passes
/// its value to [`Store::maintenance_offset`].
pub const MAINTENANCE_OFFSET_VAR: &str = "WARREN_MAINTENANCE_OFFSET";

/// The setting under which the offset chosen for a database is stored.
const STORED_KEY: &str = "maintenance_offset_minutes";

/// Minutes per day: offsets are below it.
const DAY_MINUTES: u32 = 1440;

/// Where the maintenance offset comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaintenanceOffset {
    /// Configured: this many minutes.
    Configured(u32),
    /// Not configured (or invalid): the one stored in the database, which is this
    /// random choice if none is stored yet.
    Stored {
        /// The offset to store when the database holds none.
        init: u32,
    },
}

impl MaintenanceOffset {
    /// Decides from the configured value (`None` when unset): a valid one is used;
    /// otherwise the database's, initialised with a random offset.
    pub fn from_config(configured: Option<&str>) -> MaintenanceOffset {
        match crate::cron::parse_maintenance_offset(configured) {
            Some(minutes) => MaintenanceOffset::Configured(minutes),
            None => MaintenanceOffset::Stored {
                init: rand::random_range(0..DAY_MINUTES),
            },
        }
    }

    /// The offset, given the value the database holds (after storing `init` if it
    /// held none). An unreadable stored value counts as 0.
    fn with_stored(stored: &str) -> u32 {
        crate::cron::parse_maintenance_offset(Some(stored)).unwrap_or(0)
    }
}

impl Store {
    /// The maintenance zone's offset in minutes: `configured` (the value of
    /// [`MAINTENANCE_OFFSET_VAR`]) when it is valid, otherwise a random offset chosen
    /// once per database and stored, so every node agrees on it.
    pub async fn maintenance_offset(&self, configured: Option<&str>) -> StoreResult<u32> {
        match MaintenanceOffset::from_config(configured) {
            MaintenanceOffset::Configured(minutes) => Ok(minutes),
            MaintenanceOffset::Stored { init } => {
                let stored = self.setting_or_init(STORED_KEY, &init.to_string()).await?;
                Ok(MaintenanceOffset::with_stored(&stored))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_configuration_wins() {
        assert_eq!(
            MaintenanceOffset::from_config(Some(" 90 ")),
            MaintenanceOffset::Configured(90)
        );
        assert_eq!(
            MaintenanceOffset::from_config(Some("0")),
            MaintenanceOffset::Configured(0)
        );
    }

    #[test]
    fn otherwise_the_database_decides_with_a_random_start() {
        for configured in [None, Some("1440"), Some("-5"), Some("soon")] {
            match MaintenanceOffset::from_config(configured) {
                MaintenanceOffset::Stored { init } => assert!(init < DAY_MINUTES),
                other => panic!("{configured:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn the_stored_value_is_read_back_and_garbage_is_zero() {
        assert_eq!(MaintenanceOffset::with_stored("1439"), 1439);
        assert_eq!(MaintenanceOffset::with_stored("1440"), 0);
        assert_eq!(MaintenanceOffset::with_stored("x"), 0);
    }
}
