//! A simulator-shaped scenario: a seeded generator that writes the simulator's scenario file
//! format (`spec/simulator-api.md`), a parser that reads it back, and a model of the state a
//! replay of it should leave behind.
//!
//! The generator imitates the course's scenario: about 200 registrations per 26,000 actions,
//! most of them early, then roughly 43% tweets, 37% follows and 18% unfollows, with the
//! awkward data the real file holds: "First Last" names with non-ASCII letters, tweets with
//! typographic punctuation and HTML, passwords with `\ " ' { <`, follows of users already
//! followed and unfollows of users never followed.

use std::collections::HashMap;

/// splitmix64: a tiny seedable generator, so every run replays the same scenario.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index below `n` (modulo bias is irrelevant at these sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1_u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What an action asks for, with the arguments its line carries after the username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Register { email: String, pwd: String },
    Tweet { content: String },
    Follow { target: String },
    Unfollow { target: String },
}

impl Command {
    /// The command's name in the scenario file.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Tweet { .. } => "tweet",
            Self::Follow { .. } => "follow",
            Self::Unfollow { .. } => "unfollow",
        }
    }
}

/// One line of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Sent as `latest`.
    pub id: i64,
    /// Who acts (and, for `register`, the name registered).
    pub user: String,
    pub command: Command,
}

/// Parses a scenario file: one action a line, fields separated by tabs, nothing quoted.
/// `delay` and `timestamp` must be numbers but are not kept: the replay sends each action as
/// soon as the previous one is answered, which is the harder case for the server.
pub fn parse(text: &str) -> Result<Vec<Action>, String> {
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            parse_line(line).map_err(|err| format!("line {}: {err}: {line:?}", index + 1))
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Action, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [id, delay, timestamp, command, user, arguments @ ..] = fields.as_slice() else {
        return Err(format!("{} fields, at least 5 expected", fields.len()));
    };
    let id = id.parse().map_err(|err| format!("id: {err}"))?;
    delay
        .parse::<f64>()
        .map_err(|err| format!("delay: {err}"))?;
    timestamp
        .parse::<u64>()
        .map_err(|err| format!("timestamp: {err}"))?;
    let command = match (*command, arguments) {
        ("register", [email, pwd]) => Command::Register {
            email: (*email).to_owned(),
            pwd: (*pwd).to_owned(),
        },
        ("tweet", [content]) => Command::Tweet {
            content: (*content).to_owned(),
        },
        ("follow", [target]) => Command::Follow {
            target: (*target).to_owned(),
        },
        ("unfollow", [target]) => Command::Unfollow {
            target: (*target).to_owned(),
        },
        (command, arguments) => {
            return Err(format!(
                "{command:?} with {} arguments is not a command",
                arguments.len()
            ))
        }
    };
    Ok(Action {
        id,
        user: (*user).to_owned(),
        command,
    })
}

/// What an action did to the modelled state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Effect {
    Registered,
    NameTaken,
    Posted,
    Followed,
    AlreadyFollowed,
    Unfollowed,
    NotFollowed,
}

/// The state the server should hold after the actions applied so far.
#[derive(Default)]
pub struct Model {
    /// In registration order.
    users: Vec<String>,
    /// Each registered user's follows, oldest first.
    follows: HashMap<String, Vec<String>>,
    /// Every message as (author, content), oldest first.
    messages: Vec<(String, String)>,
}

impl Model {
    /// Applies `action`. Like the real scenario, actions other than `register` only name
    /// registered users; anything else is a bug in the scenario, hence a panic.
    pub fn apply(&mut self, action: &Action) -> Effect {
        let user = &action.user;
        match &action.command {
            Command::Register { .. } if self.is_registered(user) => Effect::NameTaken,
            Command::Register { .. } => {
                self.users.push(user.clone());
                self.follows.insert(user.clone(), Vec::new());
                Effect::Registered
            }
            Command::Tweet { content } => {
                assert!(self.is_registered(user), "{action:?}: unknown user");
                self.messages.push((user.clone(), content.clone()));
                Effect::Posted
            }
            Command::Follow { target } => {
                let follows = self.follows_to_change(action, target);
                if follows.contains(target) {
                    Effect::AlreadyFollowed
                } else {
                    follows.push(target.clone());
                    Effect::Followed
                }
            }
            Command::Unfollow { target } => {
                let follows = self.follows_to_change(action, target);
                match follows.iter().position(|followee| followee == target) {
                    Some(index) => {
                        // Re-following later appends again: follows list oldest follow first.
                        follows.remove(index);
                        Effect::Unfollowed
                    }
                    None => Effect::NotFollowed,
                }
            }
        }
    }

    fn follows_to_change(&mut self, action: &Action, target: &str) -> &mut Vec<String> {
        assert!(self.is_registered(target), "{action:?}: unknown target");
        self.follows
            .get_mut(&action.user)
            .unwrap_or_else(|| panic!("{action:?}: unknown user"))
    }

    fn is_registered(&self, user: &str) -> bool {
        self.follows.contains_key(user)
    }

    /// Registered users, in registration order.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// Whom `user` follows, oldest follow first.
    pub fn follows_of(&self, user: &str) -> &[String] {
        self.follows.get(user).map_or(&[], Vec::as_slice)
    }

    /// The newest `limit` messages of everyone, newest first.
    pub fn newest(&self, limit: usize) -> Vec<(String, String)> {
        self.messages.iter().rev().take(limit).cloned().collect()
    }

    /// The newest `limit` messages of `author`, newest first.
    pub fn newest_by(&self, author: &str, limit: usize) -> Vec<(String, String)> {
        self.messages
            .iter()
            .rev()
            .filter(|(user, _)| user == author)
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The course's scenario registers 200 users in 26,000 actions.
const REGISTRATION_SHARE: f64 = 200.0 / 26_000.0;
/// Even a short scenario needs enough users for follows to mean something.
const MIN_REGISTRATIONS: usize = 10;
/// Registrations of a name already taken, per action.
const TAKEN_NAME_SHARE: f64 = 0.002;
/// Of the follows, how many pick someone the user already follows.
const REFOLLOW_SHARE: f64 = 0.2;
/// Of the unfollows, how many pick someone the user follows; the rest pick someone not
/// followed where they can (the real scenario does that over a thousand times).
const UNFOLLOW_FOLLOWED_SHARE: f64 = 0.7;
const MAX_TWEET_CHARS: usize = 140;
const EMPTY_TWEET_SHARE: f64 = 0.002;
/// Timestamps start at a fixed instant, so the text depends on the seed alone.
const START_MS: u64 = 1_700_000_000_000;

/// Registered first, so that even a short scenario has them.
const AWKWARD_NAMES: [&str; 3] = ["Åse Ødegård", "José Núñez", "Zoë Brontë"];
const FIRST_NAMES: [&str; 24] = [
    "Roger",
    "Åse",
    "José",
    "Zoë",
    "Björn",
    "Siobhán",
    "Łukasz",
    "Françoise",
    "Mary",
    "John",
    "Ingrid",
    "Sören",
    "Chloé",
    "Dmitrij",
    "Aoife",
    "Renée",
    "Jürgen",
    "Ana",
    "Mikkel",
    "Þóra",
    "Nuño",
    "Kai",
    "Émile",
    "Li",
];
const LAST_NAMES: [&str; 24] = [
    "Histand",
    "Ødegård",
    "Núñez",
    "Brontë",
    "Müller",
    "O'Brien",
    "Kowalczyk",
    "Dvořák",
    "García",
    "Smith",
    "Østergaard",
    "Nørgaard",
    "Lefèvre",
    "Çelik",
    "Ålund",
    "Jensen",
    "Þórsson",
    "Brown",
    "de la Cruz",
    "Nguyễn",
    "Saint-Éloi",
    "Kjærsgaard",
    "Weiß",
    "Anand",
];
const WORDS: [&str; 24] = [
    "the",
    "simulator",
    "says",
    "hello",
    "to",
    "everyone",
    "again",
    "déjà",
    "vu",
    "naïve",
    "café",
    "smørrebrød",
    "Straße",
    "über",
    "jalapeño",
    "façade",
    "crème",
    "brûlée",
    "and",
    "of",
    "minitwit",
    "Ærøskøbing",
    "piñata",
    "garçon",
];
const MARKS: [&str; 12] = ["«", "»", "—", "…", "“", "”", "‘", "’", "–", "¡", "¿", "🙂"];
const MARKUP: [&str; 11] = [
    "<b>",
    "</b>",
    "<script>alert(1)</script>",
    "&amp;",
    "&lt;3",
    "<a href=\"/logout\">",
    "\\",
    "\"",
    "'",
    "{",
    "%20",
];
const PASSWORD_SPECIALS: [char; 5] = ['\\', '"', '\'', '{', '<'];
const PASSWORD_CHARS: [char; 22] = [
    'a', 'b', 'c', 'x', 'y', 'z', 'Q', 'W', '0', '7', '9', '\\', '"', '\'', '{', '<', '}', '>',
    '!', '%', 'ø', ' ',
];

/// A scenario of `actions` lines in the simulator's file format, the same for the same seed.
pub fn generate(actions: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let registrations =
        ((actions as f64 * REGISTRATION_SHARE).round() as usize).max(MIN_REGISTRATIONS);
    let mut text = String::new();
    let mut timestamp = START_MS;
    for index in 0..actions {
        let id = i64::try_from(index).expect("an action count fits") + 1;
        let registered = model.users().len();
        let action = if registered < registrations_due(index, actions, registrations) {
            let user = new_username(&mut rng, &model);
            Action {
                id,
                command: Command::Register {
                    email: format!("{}@example.org", user.replace(' ', ".")),
                    pwd: password(&mut rng),
                },
                user,
            }
        } else if rng.chance(TAKEN_NAME_SHARE) {
            let user = rng.pick(model.users()).clone();
            Action {
                id,
                command: Command::Register {
                    email: format!("again.{id}@example.org"),
                    pwd: password(&mut rng),
                },
                user,
            }
        } else {
            // Some users are far busier than others, as in the real scenario.
            let user = model.users()[rng.below(registered).min(rng.below(registered))].clone();
            let followed = model.follows_of(&user);
            let command = match rng.below(98) {
                0..43 => Command::Tweet {
                    content: tweet(&mut rng),
                },
                43..80 => Command::Follow {
                    target: if !followed.is_empty() && rng.chance(REFOLLOW_SHARE) {
                        rng.pick(followed)
                    } else {
                        rng.pick(model.users())
                    }
                    .clone(),
                },
                _ => Command::Unfollow {
                    target: if !followed.is_empty() && rng.chance(UNFOLLOW_FOLLOWED_SHARE) {
                        rng.pick(followed)
                    } else {
                        preferably_not_in(&mut rng, model.users(), followed)
                    }
                    .clone(),
                },
            };
            Action { id, user, command }
        };
        model.apply(&action);
        let delay = rng.below(400) as u64;
        timestamp += delay;
        write_line(&mut text, &action, delay, timestamp);
    }
    text
}

/// How many users should be registered before action `index`: half of them within the
/// first 5% of the scenario, the rest spread evenly over the remainder; always at least
/// two, so that the first actions have someone to follow.
fn registrations_due(index: usize, actions: usize, total: usize) -> usize {
    let early = total / 2;
    let ramp = (actions / 20).max(1);
    let due = if index < ramp {
        early * (index + 1) / ramp
    } else {
        early + (total - early) * (index + 1 - ramp) / (actions - ramp).max(1)
    };
    due.max(2)
}

fn new_username(rng: &mut Rng, model: &Model) -> String {
    if let Some(name) = AWKWARD_NAMES.get(model.users().len()) {
        return (*name).to_owned();
    }
    // Once most pairs are taken, a number keeps longer scenarios going.
    (0..)
        .map(|attempt| {
            let name = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
            if attempt < 50 {
                name
            } else {
                format!("{name} {attempt}")
            }
        })
        .find(|name| !model.is_registered(name))
        .expect("an endless supply of names")
}

/// One of `users` not in `followed`, if a few picks find one (a busy user may follow
/// everyone); else anyone.
fn preferably_not_in<'a>(rng: &mut Rng, users: &'a [String], followed: &[String]) -> &'a String {
    let mut pick = rng.pick(users);
    for _ in 0..10 {
        if !followed.contains(pick) {
            break;
        }
        pick = rng.pick(users);
    }
    pick
}

fn tweet(rng: &mut Rng) -> String {
    if rng.chance(EMPTY_TWEET_SHARE) {
        return String::new();
    }
    let length = 1 + rng.below(MAX_TWEET_CHARS);
    let mut pieces = Vec::new();
    let mut chars = 0;
    while chars < length {
        let piece = match rng.below(10) {
            0..6 => *rng.pick(&WORDS),
            6..8 => *rng.pick(&MARKS),
            _ => *rng.pick(&MARKUP),
        };
        chars += piece.chars().count() + 1;
        pieces.push(piece);
    }
    // Cutting at a character count may leave a trailing space or half a tag; both must come
    // back byte for byte.
    pieces.join(" ").chars().take(length).collect()
}

fn password(rng: &mut Rng) -> String {
    let length = 6 + rng.below(15);
    std::iter::once(*rng.pick(&PASSWORD_SPECIALS))
        .chain((0..length).map(|_| *rng.pick(&PASSWORD_CHARS)))
        .collect()
}

fn write_line(text: &mut String, action: &Action, delay: u64, timestamp: u64) {
    let mut fields = vec![
        action.id.to_string(),
        delay.to_string(),
        timestamp.to_string(),
        action.command.name().to_owned(),
        action.user.clone(),
    ];
    match &action.command {
        Command::Register { email, pwd } => fields.extend([email.clone(), pwd.clone()]),
        Command::Tweet { content } => fields.push(content.clone()),
        Command::Follow { target } | Command::Unfollow { target } => fields.push(target.clone()),
    }
    assert!(
        fields
            .iter()
            .all(|field| !field.contains(['\t', '\n', '\r'])),
        "the format has no quoting, so no field may hold a tab or line break: {fields:?}"
    );
    text.push_str(&fields.join("\t"));
    text.push('\n');
}

#[test]
fn the_parser_reads_the_simulators_format_field_for_field() {
    let text = "1\t0\t1700000000000\tregister\tRoger Histand\tRoger.Histand@x.org\t\\\"'{< pw\n\
                2\t125\t1700000000125\ttweet\tRoger Histand\t«<b>Hi</b>» — &amp; … \n\
                3\t0.5\t1700000000126\ttweet\tRoger Histand\t\n\
                4\t7\t1700000000133\tfollow\tRoger Histand\tÅse Ødegård\n\
                5\t7\t1700000000140\tunfollow\tRoger Histand\tÅse Ødegård\n";
    let user = "Roger Histand".to_owned();
    let action = |id, command| Action {
        id,
        user: user.clone(),
        command,
    };
    assert_eq!(
        parse(text).unwrap(),
        [
            action(
                1,
                Command::Register {
                    email: "Roger.Histand@x.org".into(),
                    pwd: "\\\"'{< pw".into()
                }
            ),
            action(
                2,
                Command::Tweet {
                    content: "«<b>Hi</b>» — &amp; … ".into()
                }
            ),
            action(
                3,
                Command::Tweet {
                    content: String::new()
                }
            ),
            action(
                4,
                Command::Follow {
                    target: "Åse Ødegård".into()
                }
            ),
            action(
                5,
                Command::Unfollow {
                    target: "Åse Ødegård".into()
                }
            ),
        ]
    );
    // A tab inside a tweet cannot be told from a separator: the line is refused, not
    // silently cut.
    assert!(parse("1\t0\t0\ttweet\ta\tone\ttwo").is_err());
    assert!(parse("1\t0\t0\tretweet\ta\tb").is_err());
    assert!(parse("x\t0\t0\ttweet\ta\tb").is_err());
}

#[test]
fn the_generated_scenario_has_the_real_ones_mix_and_awkward_data() {
    let actions = parse(&generate(3_000, 7)).expect("the generated scenario parses");
    assert_eq!(actions.len(), 3_000);
    assert!(actions.iter().map(|action| action.id).eq(1..=3_000));
    assert_eq!(
        generate(3_000, 7),
        generate(3_000, 7),
        "seeded, so repeatable"
    );

    let mut model = Model::default();
    let effects: Vec<Effect> = actions.iter().map(|action| model.apply(action)).collect();
    let count = |effect, among: &[Effect]| among.iter().filter(|&&e| e == effect).count();
    let share = |effect| count(effect, &effects) as f64 / effects.len() as f64;
    assert_eq!(count(Effect::Registered, &effects), 23, "200 per 26,000");
    assert!(
        count(Effect::Registered, &effects[..300]) >= 23 / 2,
        "half the registrations come in the first tenth"
    );
    assert!(
        count(Effect::Registered, &effects[2_700..]) > 0,
        "registrations continue to the end"
    );
    assert!(count(Effect::NameTaken, &effects) > 0);
    assert!((0.40..0.46).contains(&share(Effect::Posted)));
    let follows = share(Effect::Followed) + share(Effect::AlreadyFollowed);
    assert!((0.34..0.40).contains(&follows));
    assert!(count(Effect::AlreadyFollowed, &effects) > 0);
    let unfollows = share(Effect::Unfollowed) + share(Effect::NotFollowed);
    assert!((0.15..0.21).contains(&unfollows));
    // The real scenario: over 1,000 of about 4,650 unfollows are of users not followed.
    assert!(share(Effect::NotFollowed) * 26_000.0 > 1_000.0);
    assert_eq!(&model.users()[..3], AWKWARD_NAMES);
    let tweets: Vec<&str> = actions
        .iter()
        .filter_map(|action| match &action.command {
            Command::Tweet { content } => Some(content.as_str()),
            _ => None,
        })
        .collect();
    assert!(tweets
        .iter()
        .all(|tweet| tweet.chars().count() <= MAX_TWEET_CHARS));
    assert!(tweets
        .iter()
        .any(|tweet| tweet.chars().count() == MAX_TWEET_CHARS));
    for needle in [
        "«",
        "—",
        "…",
        "“",
        "<b>",
        "<script>alert(1)</script>",
        "&amp;",
    ] {
        assert!(
            tweets.iter().any(|tweet| tweet.contains(needle)),
            "a tweet holds {needle}"
        );
    }
    assert!(actions.iter().all(|action| match &action.command {
        Command::Register { pwd, .. } => pwd.contains(PASSWORD_SPECIALS),
        _ => true,
    }));
}
