//! The parameters the data services share: dates, `lastupdate`, `offset` paging, lists of
//! types and `data_fields`. A value that does not parse is refused with
//! `Invalid Params: invalid <name>`, never ignored.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::seed::{self, Window};
use crate::clock::unix_secs;
use crate::state::Inner;
use crate::wire::{Params, Reject};

/// One authorized call of a data service: its parameters, its user, the sandbox's time and
/// state.
pub(crate) struct Call<'a> {
    pub(crate) params: &'a Params,
    pub(crate) userid: u64,
    pub(crate) now: SystemTime,
    pub(crate) inner: &'a Inner,
}

/// A range of whole days (UTC), inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Days {
    pub(crate) first: i64,
    pub(crate) last: i64,
}

/// How a service that takes `startdateymd`/`enddateymd` or `lastupdate` selects records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Records of these days.
    Days(Days),
    /// Records created or modified at or after this unix time.
    UpdatedSince(i64),
}

/// A page of records, and where the next one starts.
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) more: bool,
    /// The `offset` of the next page; 0 on the last page.
    pub(crate) offset: usize,
}

impl<'a> Call<'a> {
    pub(crate) fn new(params: &'a Params, userid: u64, now: SystemTime, inner: &'a Inner) -> Self {
        Self {
            params,
            userid,
            now,
            inner,
        }
    }

    /// The days the user has seeded data for.
    pub(crate) fn window(&self) -> Window {
        self.inner.data_window
    }

    /// The sandbox's time in unix seconds.
    pub(crate) fn now_secs(&self) -> i64 {
        i64::try_from(unix_secs(self.now)).unwrap_or(i64::MAX)
    }

    /// An optional integer parameter.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, Reject> {
        self.params
            .get(name)
            .map(|v| v.trim().parse::<i64>())
            .transpose()
            .map_err(|_| Reject::invalid_param(name))
    }

    /// An optional `Y-m-d` date parameter, as a day number.
    pub(crate) fn ymd(&self, name: &str) -> Result<Option<i64>, Reject> {
        self.params
            .get(name)
            .map(|v| seed::parse_ymd(v).ok_or_else(|| Reject::invalid_param(name)))
            .transpose()
    }

    /// `startdateymd` and `enddateymd`, or else `lastupdate`; one of the two is required.
    pub(crate) fn selection(&self) -> Result<Selection, Reject> {
        if let Some(first) = self.ymd("startdateymd")? {
            let last = self
                .ymd("enddateymd")?
                .ok_or_else(|| Reject::missing("enddateymd"))?;
            return Ok(Selection::Days(Days { first, last }));
        }
        match self.int("lastupdate")? {
            Some(since) => Ok(Selection::UpdatedSince(since)),
            None => Err(Reject::missing("startdateymd")),
        }
    }

    /// A comma-separated list of integers, such as `meastypes=1,4,12`.
    pub(crate) fn int_list(&self, name: &str) -> Result<Option<Vec<i64>>, Reject> {
        let Some(raw) = self.params.get(name) else {
            return Ok(None);
        };
        raw.split(',')
            .map(|v| v.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|_| Reject::invalid_param(name))
    }

    /// `data_fields`, restricted to the fields the service knows, or `default` when absent.
    /// Unknown names are ignored, as Withings ignores them.
    pub(crate) fn fields(
        &self,
        known: &'static [&'static str],
        default: &'static [&'static str],
    ) -> Vec<&'static str> {
        match self.params.get("data_fields") {
            None => default.to_vec(),
            Some(raw) => {
                let asked: Vec<&str> = raw.split(',').map(str::trim).collect();
                known
                    .iter()
                    .copied()
                    .filter(|k| asked.contains(k))
                    .collect()
            }
        }
    }

    /// One page of `all`, from `offset`, of the configured page size.
    pub(crate) fn page<T>(&self, all: Vec<T>) -> Result<Page<T>, Reject> {
        let offset = match self.int("offset")? {
            None => 0,
            Some(o) => usize::try_from(o).map_err(|_| Reject::invalid_param("offset"))?,
        };
        let size = self.inner.config.page_size.max(1);
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(offset).take(size).collect();
        let next = offset.saturating_add(items.len());
        let more = next < total;
        Ok(Page {
            items,
            more,
            offset: if more { next } else { 0 },
        })
    }
}

/// Keeps the entries of `values` named in `fields`, in the order of `fields`.
pub(crate) fn only(fields: &[&str], mut values: Map<String, Value>) -> Map<String, Value> {
    let mut kept = Map::new();
    for f in fields {
        if let Some(v) = values.remove(*f) {
            kept.insert((*f).to_owned(), v);
        }
    }
    kept
}
