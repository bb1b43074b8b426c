//! Names that travel as text (database columns, JSON, URLs) but are enums everywhere else.

/// Declares an enum whose variants have one spelling each on the wire and in the database:
/// `as_str`, `ALL`, `Display`, `FromStr` (an unknown spelling is an error naming the good ones)
/// and serde, all from that one list, so a new variant cannot be forgotten in any of them.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant ),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<$name, String> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::wire::unknown($what, text, &[$($text),+])),
                }
            }
        }
    };
}

/// `unknown edge status `busy`: use online, offline or unknown`
pub fn unknown(what: &str, text: &str, names: &[&str]) -> String {
    let shown: String = text.chars().take(64).collect();
    match names {
        [] => format!("unknown {what} `{shown}`"),
        [one] => format!("unknown {what} `{shown}`: use {one}"),
        [rest @ .., last] => format!("unknown {what} `{shown}`: use {} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    crate::wire_enum! {
        enum Colour ("colour") { Red = "red", DarkBlue = "dark_blue" }
    }

    #[test]
    fn every_spelling_round_trips_and_others_are_errors() {
        for colour in Colour::ALL {
            assert_eq!(colour.as_str().parse::<Colour>(), Ok(*colour));
            assert_eq!(serde_json::to_value(colour).ok(), Some(serde_json::Value::from(colour.as_str())));
        }
        assert_eq!("Red".parse::<Colour>(), Err("unknown colour `Red`: use red or dark_blue".into()));
        assert!(serde_json::from_str::<Colour>("\"blue\"").is_err());
    }
}
