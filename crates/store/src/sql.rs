//! Dynamic SQL with `$n` placeholders on every backend. (sqlx's `QueryBuilder` writes `?` for the
//! `Any` driver, which PostgreSQL refuses.)

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    OptFloat(Option<f64>),
}

pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql { text: text.to_owned(), args: Vec::new() }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Sql {
        self.args.push(arg);
        let n = self.args.len();
        self.text.push_str(&format!("${n}"));
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

    pub fn query(&self) -> Query<'_, Any, AnyArguments> {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.text.clone()));
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
