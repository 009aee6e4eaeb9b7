//! Which rows of a score table make series: `column=value` filters, and whether per-category rows
//! count (by default only the overall rows, those with an empty `category`, do).

use crate::data::Table;
use crate::error::LawError;
use crate::Result;
use std::fmt;

/// Row filters for a score table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// (column, allowed values); a row is kept when, for every column named, its cell is one of
    /// the values (an empty value keeps empty cells).
    filters: Vec<(String, Vec<String>)>,
    /// Keep rows with a category too (else only overall rows, unless `category` is filtered).
    pub categories: bool,
}

impl Selection {
    /// From `column=value` terms (the same column may repeat: any of its values matches).
    pub fn parse(terms: &[String], categories: bool) -> Result<Self> {
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for term in terms {
            let (column, value) = term
                .split_once('=')
                .ok_or_else(|| LawError::Invalid(format!("selection term `{term}`: expected COLUMN=VALUE (an empty VALUE selects empty cells)")))?;
            let (column, value) = (column.trim().to_string(), value.trim().to_string());
            if column.is_empty() {
                return Err(LawError::Invalid(format!(
                    "selection term `{term}`: the column name is empty"
                )));
            }
            match filters.iter_mut().find(|f| f.0 == column) {
                Some(f) => f.1.push(value),
                None => filters.push((column, vec![value])),
            }
        }
        Ok(Self { filters, categories })
    }

    /// No filter given.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// A row predicate for `table`; a filter on a column the table lacks is an error.
    pub(crate) fn compile(&self, table: &Table) -> Result<impl Fn(&[String]) -> bool> {
        let mut checks: Vec<(usize, Vec<String>)> = Vec::new();
        for (column, values) in &self.filters {
            let i = table.column(&[column]).ok_or_else(|| {
                LawError::Invalid(format!("selection names column `{column}`, which the table does not have (columns: {})", table.headers.join(", ")))
            })?;
            checks.push((i, values.clone()));
        }
        let category_filtered = self.filters.iter().any(|f| f.0.eq_ignore_ascii_case("category"));
        if let (false, false, Some(i)) =
            (self.categories, category_filtered, table.column(&["category"]))
        {
            checks.push((i, vec![String::new()]));
        }
        Ok(move |cells: &[String]| {
            checks.iter().all(|(i, values)| {
                values.iter().any(|v| cells.get(*i).map_or(v.is_empty(), |c| c == v))
            })
        })
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .filters
            .iter()
            .flat_map(|(c, vs)| vs.iter().map(move |v| format!("{c}={v}")))
            .collect();
        write!(f, "{}", terms.join(","))?;
        if self.categories {
            write!(f, "{}with categories", if terms.is_empty() { "" } else { ", " })?;
        }
        Ok(())
    }
}
