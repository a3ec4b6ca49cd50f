//! The fixed list of 256 plain English words behind pairing codes and fingerprints: one word
//! is one byte. Sorted, lowercase ASCII, distinct; changing it changes every code and
//! fingerprint, so it is part of the wire specification.

/// Word `i` stands for the byte `i`.
pub(crate) const WORDS: [&str; 256] = [
    "acorn", "actor", "agent", "alarm", "album", "alley", "amber", "angle", "ankle", "apple",
    "apron", "arena", "arrow", "atlas", "attic", "autumn", "baby", "bacon", "badge", "bagel",
    "baker", "bamboo", "banana", "banjo", "barrel", "basket", "beach", "beard", "bench", "berry",
    "bicycle", "bird", "biscuit", "blanket", "blossom", "boat", "bottle", "bowl", "bracket",
    "bread", "brick", "bridge", "broom", "bubble", "bucket", "buffalo", "bundle", "butter",
    "button", "cabin", "cactus", "camel", "camera", "candle", "canoe", "canvas", "carpet",
    "carrot", "castle", "cattle", "cave", "cedar", "cellar", "chair", "chalk", "cherry", "chess",
    "chicken", "cider", "cinema", "circle", "citrus", "clock", "cloud", "clover", "coast",
    "coconut", "coffee", "comet", "copper", "coral", "cotton", "cousin", "crayon", "cricket",
    "crown", "crystal", "cupboard", "curtain", "cushion", "daisy", "dancer", "desert", "diamond",
    "dinner", "doctor", "dolphin", "donkey", "dragon", "drum", "eagle", "earth", "easel", "elbow",
    "engine", "falcon", "farmer", "feather", "fence", "ferry", "fiddle", "finger", "flute",
    "forest", "fossil", "fountain", "fox", "frog", "garden", "garlic", "giant", "ginger",
    "giraffe", "glacier", "glove", "goat", "gravel", "guitar", "hammer", "harbor", "harvest",
    "hazel", "helmet", "honey", "horse", "island", "ivory", "jacket", "jaguar", "jelly", "jigsaw",
    "jungle", "kettle", "kitten", "ladder", "lagoon", "lantern", "lemon", "lentil", "letter",
    "lily", "lizard", "lobster", "locket", "magnet", "mango", "maple", "marble", "meadow", "melon",
    "mermaid", "meteor", "mirror", "mitten", "monkey", "mosaic", "mountain", "muffin", "museum",
    "needle", "nickel", "noodle", "nutmeg", "oasis", "ocean", "olive", "onion", "orange", "orbit",
    "orchid", "otter", "owl", "oyster", "paddle", "palace", "panda", "paper", "parrot", "peach",
    "peanut", "pebble", "pencil", "pepper", "piano", "pillow", "pilot", "pirate", "planet", "plum",
    "pocket", "pony", "potato", "puzzle", "quartz", "quilt", "rabbit", "radio", "raft", "rainbow",
    "raven", "ribbon", "river", "robot", "rocket", "saddle", "salmon", "sandal", "saucer",
    "seagull", "shadow", "shovel", "silver", "skate", "sled", "slipper", "snail", "spider",
    "sponge", "squirrel", "statue", "summer", "sunset", "tablet", "teapot", "temple", "tiger",
    "tomato", "tractor", "trumpet", "tulip", "tunnel", "turtle", "umbrella", "valley", "velvet",
    "violin", "volcano", "wagon", "walnut", "walrus", "willow", "window", "winter", "wizard",
    "yogurt", "zebra",
];

/// The byte a word stands for (exact lowercase match).
pub(crate) fn index_of(word: &str) -> Option<u8> {
    WORDS
        .binary_search(&word)
        .ok()
        .and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_256_sorted_distinct_lowercase_words() {
        assert!(WORDS.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(
            WORDS
                .iter()
                .all(|w| (3..=8).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()))
        );
        for (i, w) in WORDS.iter().enumerate() {
            assert_eq!(index_of(w), Some(i as u8));
        }
        assert_eq!(index_of("Apple"), None);
    }
}
