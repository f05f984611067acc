//! How the task model's own types travel to and from SQL, on every backend: a
//! [`TaskId`] and a [`LeaseToken`] as `BIGINT`, a [`TaskState`] as its lower-case name
//! in a text column. Queries compare and store these types directly, so no state is
//! spelled as a string literal and no id or token is a bare integer.

use crate::task::{LeaseToken, TaskId, TaskState};
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{BigInt, Text};

/// A newtype over `i64` stored as `BIGINT`.
macro_rules! bigint_newtype {
    ($ty:ident) => {
        impl<DB: Backend> ToSql<BigInt, DB> for $ty
        where
            i64: ToSql<BigInt, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                <i64 as ToSql<BigInt, DB>>::to_sql(&self.0, out)
            }
        }

        impl<DB: Backend> FromSql<BigInt, DB> for $ty
        where
            i64: FromSql<BigInt, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<$ty> {
                <i64 as FromSql<BigInt, DB>>::from_sql(bytes).map($ty)
            }
        }
    };
}

bigint_newtype!(TaskId);
bigint_newtype!(LeaseToken);

impl<DB: Backend> ToSql<Text, DB> for TaskState
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        <str as ToSql<Text, DB>>::to_sql(self.as_str(), out)
    }
}

impl<DB: Backend> FromSql<Text, DB> for TaskState
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<TaskState> {
        let text = <String as FromSql<Text, DB>>::from_sql(bytes)?;
        Ok(text.parse::<TaskState>()?)
    }
}
