//! The databases: one key space per `SELECT` index, each with a revision floor.
//!
//! Databases are created on first write and kept sparse (a `Vec` grown to the highest
//! index written), so the state machine never depends on the configured `databases`
//! count: that setting only limits what clients may select. Index bounds that every
//! replica must agree on are the constant [`DATABASES_MAX`], checked when an entry is
//! decoded.
//!
//! A key's *effective* revision is `max(its slot's revision, its database's floor)`. The
//! floor is raised to the entry's index by SWAPDB, which changes every key of both
//! databases at once without touching them (O(1) instead of O(keys)), so a WATCH of any
//! key in a swapped database sees the change.

use super::command::{DbIndex, DATABASES_MAX};
use super::keyspace::{KeySpace, Slot};

/// One database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Database {
    pub keys: KeySpace,
    /// Every key's revision is at least this (see the module documentation).
    pub revision_floor: u64,
}

impl Database {
    /// True when the database holds no key. Its floor then matters no more: every key
    /// written later gets a later revision. Blank databases are not in snapshots or
    /// digests, and compare equal whatever their floors.
    pub fn is_blank(&self) -> bool {
        self.keys.is_empty()
    }

    /// The effective revision of a slot of this database.
    pub fn revision_of(&self, slot: &Slot) -> u64 {
        slot.revision().max(self.revision_floor)
    }
}

/// All databases.
#[derive(Clone, Debug, Default)]
pub struct Databases {
    /// Invariant (after `trim`): at most [`DATABASES_MAX`]; no trailing blank database,
    /// and no blank database with a floor (so two equal states compare and digest equal
    /// however they got there).
    dbs: Vec<Database>,
}

impl PartialEq for Databases {
    fn eq(&self, other: &Databases) -> bool {
        fn written(dbs: &Databases) -> impl Iterator<Item = (usize, u64, &KeySpace)> {
            dbs.dbs
                .iter()
                .enumerate()
                .filter(|(_, db)| !db.is_blank())
                .map(|(at, db)| (at, db.revision_floor, &db.keys))
        }
        written(self).eq(written(other))
    }
}

impl Eq for Databases {}

impl Databases {
    /// The database at `db`, if it was ever written.
    pub fn get(&self, db: DbIndex) -> Option<&Database> {
        self.dbs.get(db.0 as usize)
    }

    /// The database at `db`, created (with those before it) if needed.
    ///
    /// # Panics
    /// If `db` is not below [`DATABASES_MAX`]: the entry decoder refuses such indexes.
    pub fn get_mut(&mut self, db: DbIndex) -> &mut Database {
        assert!(db.0 < DATABASES_MAX, "database {} out of range", db.0);
        let at = db.0 as usize;
        if self.dbs.len() <= at {
            self.dbs.resize_with(at + 1, Database::default);
        }
        &mut self.dbs[at]
    }

    /// After a write: resets the floor of every emptied database (so replicas that
    /// restored a snapshot, which keeps no blank database, stay byte-identical) and drops
    /// blank databases at the end. O(databases).
    pub fn trim(&mut self) {
        for db in &mut self.dbs {
            if db.is_blank() {
                db.revision_floor = 0;
            }
        }
        while self.dbs.last().is_some_and(Database::is_blank) {
            self.dbs.pop();
        }
    }

    /// The databases with their indexes, in order, blank ones included.
    pub fn iter(&self) -> impl Iterator<Item = (DbIndex, &Database)> {
        self.dbs.iter().enumerate().map(|(at, db)| {
            let index = u32::try_from(at).expect("at most DATABASES_MAX databases");
            (DbIndex(index), db)
        })
    }

    /// Replaces every database (restoring a snapshot).
    pub fn from_vec(dbs: Vec<Database>) -> Databases {
        let mut databases = Databases { dbs };
        databases.trim();
        databases
    }

    /// The live slot of `key` in `db` at `now`.
    pub fn live(&self, db: DbIndex, key: &[u8], now: u64) -> Option<&Slot> {
        self.get(db)?.keys.get_live(key, now)
    }

    /// The effective revision of `key` in `db` if it is live at `now`.
    pub fn live_revision(&self, db: DbIndex, key: &[u8], now: u64) -> Option<u64> {
        let database = self.get(db)?;
        let slot = database.keys.get_live(key, now)?;
        Some(database.revision_of(slot))
    }

    /// Removes `key` from `db` whether or not it has expired (an expired key found by a
    /// write is reclaimed on the spot); returns the slot only if it was live at `now`.
    pub fn remove_live(&mut self, db: DbIndex, key: &[u8], now: u64) -> Option<Slot> {
        self.get(db)?;
        let removed = self.get_mut(db).keys.remove(key)?;
        (!removed.expired_at(now)).then_some(removed)
    }

    /// Keys stored in every database, expired ones included.
    pub fn len(&self) -> usize {
        self.dbs.iter().map(|db| db.keys.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Swaps two databases and raises both floors to `revision` (a database swapped with
    /// itself does not change, as in Redis).
    pub fn swap(&mut self, a: DbIndex, b: DbIndex, revision: u64) {
        if a == b {
            return;
        }
        self.get_mut(a.max(b));
        self.dbs.swap(a.0 as usize, b.0 as usize);
        self.get_mut(a).revision_floor = revision;
        self.get_mut(b).revision_floor = revision;
    }

    /// Empties one database (its floor stays: keys are gone, nothing to compare).
    pub fn flush(&mut self, db: DbIndex) {
        if self.get(db).is_some() {
            self.get_mut(db).keys = KeySpace::default();
            self.trim();
        }
    }

    /// Empties every database.
    pub fn flush_all(&mut self) {
        for db in &mut self.dbs {
            db.keys = KeySpace::default();
        }
        self.trim();
    }

    /// Checks every key space (O(n): tests and debug builds).
    pub fn check_invariants(&self) {
        assert!(
            self.dbs.len() <= DATABASES_MAX as usize,
            "too many databases"
        );
        assert!(
            !self.dbs.last().is_some_and(Database::is_blank),
            "trailing blank database"
        );
        assert!(
            self.dbs
                .iter()
                .all(|db| !db.is_blank() || db.revision_floor == 0),
            "a blank database keeps a floor"
        );
        for db in &self.dbs {
            db.keys.check_invariants();
        }
    }
}
