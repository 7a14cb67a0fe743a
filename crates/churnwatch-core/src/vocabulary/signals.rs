//! The seven-signal record: one value per term of the risk's log-odds after
//! the intercept, the population model's own log-odds (`base`) and the six
//! signals. The weights (`score.weights`), a customer's strengths and the
//! strengths shown in a score are each one of these, so the names and their
//! order are written once, here.

use serde::{Deserialize, Serialize};

/// One `T` per term, in [`Signals::NAMES`] order. No `Default`: what a
/// missing weight or strength means is said where the record is made.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signals<T> {
    /// The population model's own log-odds, P(no activity in the horizon).
    pub base: T,
    /// Silence measured against the customer's own typical gap.
    pub overdue: T,
    pub rate_drop: T,
    pub satisfaction_drop: T,
    pub friction: T,
    pub escalation: T,
    pub renewal: T,
}

/// How many terms a record has.
pub const SIGNALS: usize = 7;

impl<T> Signals<T> {
    /// The terms' names (configuration keys, JSON fields, `/metrics` labels),
    /// in the record's fixed order.
    pub const NAMES: [&'static str; SIGNALS] = [
        "base",
        "overdue",
        "rate_drop",
        "satisfaction_drop",
        "friction",
        "escalation",
        "renewal",
    ];

    pub fn from_array(a: [T; SIGNALS]) -> Self {
        let [base, overdue, rate_drop, satisfaction_drop, friction, escalation, renewal] = a;
        Signals {
            base,
            overdue,
            rate_drop,
            satisfaction_drop,
            friction,
            escalation,
            renewal,
        }
    }

    pub fn into_array(self) -> [T; SIGNALS] {
        [
            self.base,
            self.overdue,
            self.rate_drop,
            self.satisfaction_drop,
            self.friction,
            self.escalation,
            self.renewal,
        ]
    }

    /// The record with `f` applied to each term.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Signals<U> {
        Signals::from_array(self.into_array().map(f))
    }

    /// The two records' terms, paired.
    pub fn zip<U>(self, o: Signals<U>) -> Signals<(T, U)> {
        Signals {
            base: (self.base, o.base),
            overdue: (self.overdue, o.overdue),
            rate_drop: (self.rate_drop, o.rate_drop),
            satisfaction_drop: (self.satisfaction_drop, o.satisfaction_drop),
            friction: (self.friction, o.friction),
            escalation: (self.escalation, o.escalation),
            renewal: (self.renewal, o.renewal),
        }
    }

    /// Each term with its name, in the fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &T)> {
        let terms = [
            &self.base,
            &self.overdue,
            &self.rate_drop,
            &self.satisfaction_drop,
            &self.friction,
            &self.escalation,
            &self.renewal,
        ];
        Self::NAMES.into_iter().zip(terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_the_names_order_everywhere() {
        let s = Signals::from_array([0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(s.overdue, 1);
        assert_eq!(s.renewal, 6);
        assert_eq!(s.into_array(), [0, 1, 2, 3, 4, 5, 6]);
        let named: Vec<(&str, i32)> = s.iter().map(|(n, v)| (n, *v)).collect();
        assert_eq!(
            named,
            [
                ("base", 0),
                ("overdue", 1),
                ("rate_drop", 2),
                ("satisfaction_drop", 3),
                ("friction", 4),
                ("escalation", 5),
                ("renewal", 6)
            ]
        );
        assert_eq!(s.map(|v| v * 10).satisfaction_drop, 30);
        // The JSON field names are the names, in order.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"base":0,"overdue":1,"rate_drop":2,"satisfaction_drop":3,"friction":4,"escalation":5,"renewal":6}"#
        );
    }
}
