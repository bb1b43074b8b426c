//! Dynamic SQL with the placeholders each backend parses fastest: `$n` for PostgreSQL (sqlx's
//! `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL refuses), plain `?` for SQLite,
//! which looks every `$n` up by name among the statement's earlier ones while it parses and again
//! while sqlx binds, a cost that grows with the square of the placeholders (an `IN` list of 500
//! ids, a 500-row upsert).

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::Backend;

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    OptFloat(Option<f64>),
}

pub(crate) struct Sql {
    /// With `$n` placeholders.
    text: String,
    /// The same with `?` placeholders.
    sqlite_text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql { text: text.to_owned(), sqlite_text: text.to_owned(), args: Vec::new() }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self.sqlite_text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Sql {
        self.args.push(arg);
        let n = self.args.len();
        self.text.push_str(&format!("${n}"));
        self.sqlite_text.push('?');
        self
    }

    pub fn text(&mut self, value: impl Into<String>) -> &mut Sql {
        self.bind(Arg::Text(value.into()))
    }

    /// Appends `$a, $b, ...`, one placeholder per value (the inside of an `IN (...)`).
    pub fn text_list(&mut self, values: &[String]) -> &mut Sql {
        for (k, value) in values.iter().enumerate() {
            if k > 0 {
                self.push(", ");
            }
            self.text(value.clone());
        }
        self
    }

    pub fn int(&mut self, value: i64) -> &mut Sql {
        self.bind(Arg::Int(value))
    }

    pub fn query(&self, backend: Backend) -> Query<'_, Any, AnyArguments> {
        let text = match backend {
            Backend::Postgres => &self.text,
            Backend::Sqlite => &self.sqlite_text,
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(text.clone()));
        for arg in &self.args {
            query = match arg {
                Arg::Text(v) => query.bind(v.clone()),
                Arg::OptText(v) => query.bind(v.clone()),
                Arg::Int(v) => query.bind(*v),
                Arg::OptInt(v) => query.bind(*v),
                Arg::OptFloat(v) => query.bind(*v),
            };
        }
        query
    }
}
