"""General English sentences for the synthetic corpus: the text a model needs before it meets people's speech.

The command grammar (:mod:`asr.corpora.synthetic`) has a few hundred words; a model pre-trained on it has heard
"kitchen" and "thermostat" but never "wonder", "through" or "daughter", and it learned the spelling of a small
closed set, so on read speech it spells badly even where it hears well (issue 17: 46.9 % CER after fine-tuning).
This grammar writes open-ended sentences -- narration in the past tense, questions, quoted speech, opinions,
descriptions, numbers, dates, years, sums of money, names of people and places -- over a lexicon of about two
thousand common words, with irregular verbs and plurals, so the letters, words and word lengths a model sees are
closer to those of audiobooks, dictation and conversation. Sentences are often joined (``and``, ``but``,
``because``, ``when``) so utterance lengths span 1-15 s as real ones do.

Everything is drawn from the generator passed in, so a corpus stays a function of its seed. Transcripts are
lower-case words and apostrophes, numbers written as words, as everywhere in the project.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from asr.corpora.numbers import number_to_words, ordinal_words, year_words

# ---------------------------------------------------------------------------------------------------------
# Lexicon

FIRST_NAMES = (
    "mary john james anne elizabeth thomas william margaret george helen robert alice henry charlotte edward "
    "emily richard sarah charles jane peter lucy david rose michael grace arthur ellen frank martha harry clara "
    "joseph susan daniel catherine samuel laura paul kate walter julia hugh nancy philip ruth oliver amy victor "
    "diana stephen agnes albert dorothy louis ada frederick edith tom jenny jack molly ben hannah simon eva "
    "patrick nora maria carlos ahmed fatima chen wei priya raj yuki kenji olga ivan sofia marco anna"
).split()
SURNAMES = (
    "smith brown jones taylor wilson davies evans thomas johnson roberts walker wright robinson thompson white "
    "hughes edwards green hall wood harris lewis martin jackson clarke clark turner hill scott cooper morris "
    "ward moore king watson baker harrison morgan patel young allen mitchell bell carter grant murray"
).split()
PLACE_NAMES = (
    "london paris rome berlin vienna madrid lisbon dublin edinburgh boston chicago toronto london denver "
    "seattle houston dallas atlanta miami sydney melbourne tokyo delhi cairo moscow athens oslo stockholm "
    "amsterdam brussels geneva prague warsaw budapest istanbul chicago montreal vancouver york bristol oxford "
    "cambridge manchester liverpool glasgow cardiff belfast africa asia europe america india china japan "
    "canada mexico brazil egypt france germany italy spain england scotland ireland wales russia australia "
    "texas california virginia kentucky ohio oregon florida"
).split()
PERSONS = (
    "man woman boy girl child baby mother father sister brother uncle aunt cousin friend neighbour stranger "
    "doctor nurse teacher student farmer soldier sailor captain king queen prince princess lady gentleman "
    "servant master driver writer painter singer priest judge lawyer officer policeman shepherd fisherman "
    "merchant clerk cook baker miller hunter traveller visitor guest host child widow husband wife daughter "
    "son grandmother grandfather professor scientist engineer pilot guard porter maid knight giant wizard "
    "witch thief beggar stranger fellow"
).split()
# Things that can be seen, carried or handled.
THINGS = (
    "book letter box bag basket bottle cup glass plate bowl knife fork spoon table chair bed door window key "
    "lamp candle clock watch ring coin purse pen pencil paper map picture photograph mirror coat hat shoe boot "
    "dress shirt scarf glove umbrella stick stone rock flower tree leaf branch apple orange bread cake cheese "
    "egg fish meat soup tea coffee milk water wine ball toy doll drum piano violin guitar bell whistle horse dog "
    "cat bird cow sheep pig goat chicken duck mouse rabbit fox wolf bear lion tiger snake frog bee butterfly "
    "ship boat train car bicycle cart wagon carriage engine machine wheel rope chain hammer nail axe sword gun "
    "shield flag blanket pillow towel soap brush comb newspaper magazine ticket parcel present gift jewel "
    "diamond pearl necklace button thread needle basket bucket barrel ladder fence gate wall roof chimney "
    "stair window curtain carpet cushion envelope stamp card telephone radio computer camera"
).split()
PLACES = (
    "house home room kitchen garden street road path river lake sea ocean beach island hill mountain valley "
    "forest wood field farm village town city church school hospital shop market station office bank library "
    "museum theatre hotel inn castle palace tower bridge harbour garden yard park corner cottage cabin cave "
    "desert meadow country world kingdom camp court prison factory mill barn stable cellar attic hall "
    "restaurant airport university"
).split()
ABSTRACTS = (
    "time life love hope fear truth idea reason story news secret question answer mistake chance choice "
    "danger trouble problem plan dream memory voice name word silence music noise light darkness power money "
    "work business history future past morning evening night winter summer spring autumn weather moment hour "
    "minute week year age youth health strength courage kindness anger pride joy sorrow peace war freedom "
    "justice beauty honour duty promise advice lesson knowledge language law rule custom habit manner mind "
    "heart soul spirit nature sense feeling thought opinion purpose meaning interest pleasure pain death birth"
).split()
ADJECTIVES = (
    "old young new little small big large great long short tall high low good bad fine poor rich happy sad "
    "angry afraid brave kind cruel gentle wise foolish clever strange quiet loud silent dark bright light "
    "heavy warm cold hot cool dry wet clean dirty empty full fresh ancient modern simple plain beautiful "
    "pretty lovely ugly handsome strong weak tired sick healthy busy lazy careful careless honest proud "
    "humble famous common rare curious serious funny strange wild tame free safe dangerous deep shallow wide "
    "narrow thick thin soft hard smooth rough sharp sweet bitter sour pale golden silver wooden stone broken "
    "open closed hidden lonely friendly polite rude eager calm nervous gloomy cheerful terrible wonderful "
    "perfect enormous tiny precious useful useless important private public secret certain sudden gentle "
    "red green blue yellow black white brown grey purple orange pink"
).split()
ADVERBS = (
    "slowly quickly quietly loudly carefully suddenly softly gently easily happily sadly angrily eagerly "
    "silently nervously bravely proudly kindly calmly patiently politely briefly gladly finally early late "
    "again often seldom always never sometimes already still soon almost nearly quite rather very really "
    "certainly perhaps probably together alone away back home there here abroad"
).split()
# (base, past, past participle)
TRANSITIVE = (
    ("see", "saw", "seen"),
    ("take", "took", "taken"),
    ("find", "found", "found"),
    ("give", "gave", "given"),
    ("bring", "brought", "brought"),
    ("buy", "bought", "bought"),
    ("sell", "sold", "sold"),
    ("make", "made", "made"),
    ("hold", "held", "held"),
    ("keep", "kept", "kept"),
    ("leave", "left", "left"),
    ("lose", "lost", "lost"),
    ("break", "broke", "broken"),
    ("steal", "stole", "stolen"),
    ("hide", "hid", "hidden"),
    ("carry", "carried", "carried"),
    ("open", "opened", "opened"),
    ("close", "closed", "closed"),
    ("paint", "painted", "painted"),
    ("clean", "cleaned", "cleaned"),
    ("wash", "washed", "washed"),
    ("fix", "fixed", "fixed"),
    ("build", "built", "built"),
    ("write", "wrote", "written"),
    ("read", "read", "read"),
    ("draw", "drew", "drawn"),
    ("throw", "threw", "thrown"),
    ("catch", "caught", "caught"),
    ("pull", "pulled", "pulled"),
    ("push", "pushed", "pushed"),
    ("lift", "lifted", "lifted"),
    ("drop", "dropped", "dropped"),
    ("fill", "filled", "filled"),
    ("cut", "cut", "cut"),
    ("burn", "burned", "burned"),
    ("need", "needed", "needed"),
    ("want", "wanted", "wanted"),
    ("like", "liked", "liked"),
    ("love", "loved", "loved"),
    ("hate", "hated", "hated"),
    ("remember", "remembered", "remembered"),
    ("forget", "forgot", "forgotten"),
    ("notice", "noticed", "noticed"),
    ("watch", "watched", "watched"),
    ("follow", "followed", "followed"),
    ("meet", "met", "met"),
    ("visit", "visited", "visited"),
    ("help", "helped", "helped"),
    ("thank", "thanked", "thanked"),
    ("call", "called", "called"),
    ("ask", "asked", "asked"),
    ("answer", "answered", "answered"),
    ("tell", "told", "told"),
    ("teach", "taught", "taught"),
    ("send", "sent", "sent"),
    ("receive", "received", "received"),
    ("show", "showed", "shown"),
    ("offer", "offered", "offered"),
    ("accept", "accepted", "accepted"),
    ("refuse", "refused", "refused"),
    ("choose", "chose", "chosen"),
    ("pay", "paid", "paid"),
    ("owe", "owed", "owed"),
    ("borrow", "borrowed", "borrowed"),
    ("lend", "lent", "lent"),
    ("win", "won", "won"),
    ("touch", "touched", "touched"),
    ("kiss", "kissed", "kissed"),
    ("wake", "woke", "woken"),
    ("feed", "fed", "fed"),
    ("fight", "fought", "fought"),
    ("beat", "beat", "beaten"),
    ("shake", "shook", "shaken"),
    ("wear", "wore", "worn"),
    ("tear", "tore", "torn"),
    ("hang", "hung", "hung"),
    ("ring", "rang", "rung"),
    ("eat", "ate", "eaten"),
    ("drink", "drank", "drunk"),
    ("cook", "cooked", "cooked"),
    ("hear", "heard", "heard"),
    ("understand", "understood", "understood"),
    ("believe", "believed", "believed"),
    ("expect", "expected", "expected"),
    ("describe", "described", "described"),
    ("explain", "explained", "explained"),
    ("discover", "discovered", "discovered"),
    ("examine", "examined", "examined"),
    ("search", "searched", "searched"),
    ("reach", "reached", "reached"),
    ("enter", "entered", "entered"),
    ("cross", "crossed", "crossed"),
    ("climb", "climbed", "climbed"),
    ("guard", "guarded", "guarded"),
    ("save", "saved", "saved"),
    ("destroy", "destroyed", "destroyed"),
    ("prepare", "prepared", "prepared"),
    ("arrange", "arranged", "arranged"),
    ("order", "ordered", "ordered"),
    ("count", "counted", "counted"),
    ("measure", "measured", "measured"),
    ("weigh", "weighed", "weighed"),
    ("miss", "missed", "missed"),
    ("seize", "seized", "seized"),
    ("spend", "spent", "spent"),
    ("bury", "buried", "buried"),
)
# (base, past, -ing)
INTRANSITIVE = (
    ("walk", "walked", "walking"),
    ("run", "ran", "running"),
    ("sleep", "slept", "sleeping"),
    ("sit", "sat", "sitting"),
    ("stand", "stood", "standing"),
    ("wait", "waited", "waiting"),
    ("laugh", "laughed", "laughing"),
    ("cry", "cried", "crying"),
    ("smile", "smiled", "smiling"),
    ("sing", "sang", "singing"),
    ("dance", "danced", "dancing"),
    ("work", "worked", "working"),
    ("play", "played", "playing"),
    ("rest", "rested", "resting"),
    ("travel", "travelled", "travelling"),
    ("arrive", "arrived", "arriving"),
    ("return", "returned", "returning"),
    ("fall", "fell", "falling"),
    ("rise", "rose", "rising"),
    ("swim", "swam", "swimming"),
    ("fly", "flew", "flying"),
    ("ride", "rode", "riding"),
    ("speak", "spoke", "speaking"),
    ("listen", "listened", "listening"),
    ("think", "thought", "thinking"),
    ("wonder", "wondered", "wondering"),
    ("hurry", "hurried", "hurrying"),
    ("shout", "shouted", "shouting"),
    ("whisper", "whispered", "whispering"),
    ("tremble", "trembled", "trembling"),
    ("breathe", "breathed", "breathing"),
    ("pray", "prayed", "praying"),
    ("knock", "knocked", "knocking"),
    ("wander", "wandered", "wandering"),
    ("hesitate", "hesitated", "hesitating"),
    ("disappear", "disappeared", "disappearing"),
    ("begin", "began", "beginning"),
    ("grow", "grew", "growing"),
    ("live", "lived", "living"),
    ("die", "died", "dying"),
    ("come", "came", "coming"),
    ("go", "went", "going"),
    ("stay", "stayed", "staying"),
    ("escape", "escaped", "escaping"),
    ("turn", "turned", "turning"),
    ("move", "moved", "moving"),
    ("jump", "jumped", "jumping"),
    ("kneel", "knelt", "kneeling"),
    ("lie", "lay", "lying"),
    ("shine", "shone", "shining"),
)
PREPOSITIONS = (
    "in on under over behind beside near across through along towards into from past around above below "
    "beyond inside outside upon against among between without"
).split()
MONTHS = "january february march april may june july august september october november december".split()
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_IRREGULAR_PLURALS = {
    "man": "men",
    "woman": "women",
    "child": "children",
    "mouse": "mice",
    "sheep": "sheep",
    "fish": "fish",
    "knife": "knives",
    "leaf": "leaves",
    "wife": "wives",
    "wolf": "wolves",
    "thief": "thieves",
    "policeman": "policemen",
    "fisherman": "fishermen",
    "gentleman": "gentlemen",
    "goose": "geese",
    "foot": "feet",
    "tooth": "teeth",
    "person": "people",
}
PRONOUNS = ("he", "she", "they", "we", "i", "you")
POSSESSIVES = ("my", "his", "her", "their", "our", "your")
_BE_PAST = {"he": "was", "she": "was", "i": "was", "it": "was", "they": "were", "we": "were", "you": "were"}
_OBJECT_PRONOUN = {"he": "him", "she": "her", "they": "them", "we": "us", "i": "me", "you": "you"}
OPINIONS = (
    "i think",
    "i suppose",
    "i believe",
    "i am sure",
    "i am afraid",
    "it seems",
    "everyone knew",
    "nobody knew",
    "she said",
    "he told me",
    "they say",
    "do you know",
    "i wonder if",
)
CONJUNCTIONS = ("and", "but", "because", "when", "so", "while", "until", "after", "before", "although", "and then")
EXCLAMATIONS = (
    "oh dear",
    "well",
    "yes",
    "no",
    "indeed",
    "of course",
    "good heavens",
    "look",
    "listen",
    "alas",
    "thank you",
    "please",
)
INTERJECTED_QUESTIONS = (
    "what do you mean",
    "where have you been",
    "how do you do",
    "what is the matter",
    "who is there",
    "why not",
    "is that so",
    "what time is it",
    "how much is it",
    "can you help me",
    "are you ready",
    "do you understand",
)


# ---------------------------------------------------------------------------------------------------------
# Phrases


def _pick(rng: np.random.Generator, seq: Sequence) -> str:
    return seq[int(rng.integers(len(seq)))]


def plural(noun: str) -> str:
    """English plural of a lexicon noun ("box" -> "boxes", "lady" -> "ladies", "man" -> "men")."""
    if noun in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "x", "ch", "sh", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng: np.random.Generator, nouns: Sequence[str], allow_plural: bool = True) -> str:
    noun = _pick(rng, nouns)
    adj = _pick(rng, ADJECTIVES) if rng.random() < 0.45 else None
    kind = rng.random()
    if allow_plural and kind < 0.2:
        count = int(rng.integers(2, 13))
        head = plural(noun)
        det = number_to_words(count) if rng.random() < 0.5 else _pick(rng, ("some", "many", "the", "all the", "few"))
        return " ".join(w for w in (det, adj, head) if w)
    if kind < 0.55:
        det = "the"
    elif kind < 0.8:
        det = _article(adj or noun)
    else:
        det = _pick(rng, POSSESSIVES)
    return " ".join(w for w in (det, adj, noun) if w)


def _person(rng: np.random.Generator) -> tuple[str, str]:
    """A subject and the pronoun key for agreement ("the old doctor", "he")."""
    kind = rng.random()
    if kind < 0.3:
        p = _pick(rng, PRONOUNS)
        return p, p
    if kind < 0.55:
        name = _pick(rng, FIRST_NAMES)
        if rng.random() < 0.25:
            name = f"{_pick(rng, ('mister', 'missus', 'doctor', 'captain', 'miss'))} {_pick(rng, SURNAMES)}"
        return name, "he"
    return _noun_phrase(rng, PERSONS, allow_plural=False), "he"


def _place(rng: np.random.Generator) -> str:
    if rng.random() < 0.15:
        return _pick(rng, PLACE_NAMES)
    return _noun_phrase(rng, PLACES, allow_plural=False)


def _prep_phrase(rng: np.random.Generator) -> str:
    return f"{_pick(rng, PREPOSITIONS)} {_place(rng)}"


def _time_phrase(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.25:
        return _pick(rng, ("yesterday", "last night", "that morning", "the next day", "at dawn", "at noon", "later"))
    if kind < 0.45:
        return f"on {_pick(rng, WEEKDAYS)}"
    if kind < 0.6:
        return f"in {_pick(rng, MONTHS)}"
    if kind < 0.75:
        return f"{number_to_words(int(rng.integers(2, 30)))} {_pick(rng, ('days', 'years', 'weeks', 'hours'))} ago"
    if kind < 0.9:
        return f"in {year_words(int(rng.integers(1800, 2030)))}"
    return f"at {clock_words(rng)}"


def clock_words(rng: np.random.Generator) -> str:
    hour = number_to_words(int(rng.integers(1, 13)))
    minute = int(rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50, int(rng.integers(1, 60)))))
    if minute == 0:
        return f"{hour} o'clock"
    if minute == 15 and rng.random() < 0.5:
        return f"a quarter past {hour}"
    if minute == 30 and rng.random() < 0.5:
        return f"half past {hour}"
    return f"{hour} {'oh ' + number_to_words(minute) if minute < 10 else number_to_words(minute)}"


def money_words(rng: np.random.Generator) -> str:
    unit, small = _pick(rng, (("dollars", "cents"), ("pounds", "pence"), ("euros", "cents")))
    amount = int(rng.choice((int(rng.integers(1, 20)), int(rng.integers(20, 1000)), int(rng.integers(1000, 90000)))))
    text = f"{number_to_words(amount)} {unit if amount != 1 else unit[:-1]}"
    if rng.random() < 0.3:
        text += f" and {number_to_words(int(rng.integers(1, 100)))} {small}"
    return text


def _object(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.6:
        return _noun_phrase(rng, THINGS)
    if kind < 0.8:
        return _noun_phrase(rng, PERSONS)
    if kind < 0.9:
        return _pick(rng, FIRST_NAMES)
    return _pick(rng, ("him", "her", "them", "it", "us", "me"))


def _clause(rng: np.random.Generator) -> str:
    """One past-tense clause of narration."""
    subject, key = _person(rng)
    kind = rng.random()
    if kind < 0.45:
        _, past, _ = TRANSITIVE[int(rng.integers(len(TRANSITIVE)))]
        parts = [subject, past, _object(rng)]
        if rng.random() < 0.4:
            parts.append(_prep_phrase(rng))
    elif kind < 0.7:
        _, past, _ = INTRANSITIVE[int(rng.integers(len(INTRANSITIVE)))]
        parts = [subject, past]
        if rng.random() < 0.35:
            parts.append(_pick(rng, ADVERBS))
        if rng.random() < 0.6:
            parts.append(_prep_phrase(rng))
    elif kind < 0.85:
        parts = [subject, _BE_PAST.get(key, "was")]
        if rng.random() < 0.3:
            parts.append(_pick(rng, ("very", "so", "rather", "quite", "too", "not")))
        parts.append(_pick(rng, ADJECTIVES))
    else:
        _, _, ing = INTRANSITIVE[int(rng.integers(len(INTRANSITIVE)))]
        parts = [subject, _BE_PAST.get(key, "was"), ing, _prep_phrase(rng)]
    if rng.random() < 0.2:
        parts.append(_time_phrase(rng))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Sentences


def _narration(r: np.random.Generator) -> str:
    text = _clause(r)
    if r.random() < 0.2:
        text = f"{_time_phrase(r)} {text}"
    return text


def _compound(r: np.random.Generator) -> str:
    return f"{_clause(r)} {_pick(r, CONJUNCTIONS)} {_clause(r)}"


def _question(r: np.random.Generator) -> str:
    base, _, _ = TRANSITIVE[int(r.integers(len(TRANSITIVE)))]
    kind = r.random()
    if kind < 0.3:
        return f"did {_person(r)[0]} {base} {_object(r)}"
    if kind < 0.55:
        wh = _pick(r, ("where", "why", "when", "how"))
        return f"{wh} did {_pick(r, PRONOUNS)} {base} {_object(r)}"
    if kind < 0.75:
        return f"{_pick(r, ('will', 'can', 'could', 'would', 'should'))} you {base} {_object(r)} {_prep_phrase(r)}"
    if kind < 0.9:
        return f"{_pick(r, ('is', 'was'))} the {_pick(r, THINGS)} {_pick(r, ADJECTIVES)}"
    return _pick(r, INTERJECTED_QUESTIONS)


def _speech(r: np.random.Generator) -> str:
    said = _pick(r, ("said", "cried", "asked", "replied", "answered", "whispered", "shouted"))
    start = _pick(r, EXCLAMATIONS) + " " if r.random() < 0.4 else ""
    inner = _question(r) if said == "asked" else _clause(r)
    return f"{start}{inner} {said} {_person(r)[0]}"


def _opinion(r: np.random.Generator) -> str:
    return f"{_pick(r, OPINIONS)} {'that ' if r.random() < 0.3 else ''}{_clause(r)}"


def _present(r: np.random.Generator) -> str:
    base, _, _ = TRANSITIVE[int(r.integers(len(TRANSITIVE)))]
    pronoun = _pick(r, ("we", "they", "you", "i"))
    modal = _pick(r, ("will", "must", "shall", "can", "should", "might", "would like to", "want to", "need to"))
    tail = f" {_time_phrase(r)}" if r.random() < 0.4 else ""
    return f"{pronoun} {modal} {base} {_object(r)}{tail}"


def _description(r: np.random.Generator) -> str:
    noun = _pick(r, THINGS + PLACES + ABSTRACTS)
    kind = r.random()
    if kind < 0.4:
        return f"the {noun} was {_pick(r, ('very', 'so', 'quite', 'rather', 'not', 'always'))} {_pick(r, ADJECTIVES)}"
    if kind < 0.7:
        return f"there was {_article(noun)} {noun} {_prep_phrase(r)}"
    adj = _pick(r, ADJECTIVES)
    return f"it was {_article(adj)} {adj} {_pick(r, ABSTRACTS)}"


def _numbers(r: np.random.Generator) -> str:
    kind = r.random()
    if kind < 0.2:
        n = number_to_words(int(r.choice((int(r.integers(2, 20)), int(r.integers(20, 1000))))))
        return f"there were {n} {plural(_pick(r, PERSONS + THINGS))} {_prep_phrase(r)}"
    if kind < 0.35:
        return f"{_pick(r, ('it cost', 'he paid', 'she owed me', 'the bill came to', 'they sold it for'))} {money_words(r)}"
    if kind < 0.5:
        return (
            f"{_pick(r, FIRST_NAMES)} was born in {_pick(r, PLACE_NAMES)} in {year_words(int(r.integers(1800, 2024)))}"
        )
    if kind < 0.65:
        day = ordinal_words(int(r.integers(1, 32)))
        return f"on the {day} of {_pick(r, MONTHS)} {year_words(int(r.integers(1800, 2030)))}"
    if kind < 0.75:
        digits = " ".join(number_to_words(int(d)) for d in r.integers(0, 10, size=int(r.integers(4, 11))))
        return f"{_pick(r, ('my number is', 'the code is', 'call me on', 'the account is'))} {digits}"
    if kind < 0.88:
        return f"the {_pick(r, ('train', 'boat', 'meeting', 'film', 'lesson', 'doctor'))} {_pick(r, ('leaves', 'starts', 'is', 'ends'))} at {clock_words(r)}"
    return f"chapter {number_to_words(int(r.integers(1, 60)))}"


_KINDS: list[tuple[float, Callable[[np.random.Generator], str]]] = [
    (4.0, _narration),
    (2.5, _compound),
    (1.5, _question),
    (1.5, _speech),
    (1.0, _opinion),
    (1.0, _present),
    (1.0, _description),
    (1.5, _numbers),
]
_WEIGHTS = np.array([w for w, _ in _KINDS]) / sum(w for w, _ in _KINDS)


def general_sentence(rng: np.random.Generator) -> str:
    """One utterance of general English: one sentence, or two or three joined as a reader runs them on."""
    count = 1 if rng.random() < 0.6 else int(rng.integers(2, 4))
    parts = [_KINDS[int(rng.choice(len(_KINDS), p=_WEIGHTS))][1](rng) for _ in range(count)]
    return " ".join(parts)


def vocabulary() -> set[str]:
    """Every word the lexicon holds (verb forms, plurals and number words included) and the grammar's glue."""
    words: set[str] = set()
    for group in (FIRST_NAMES, SURNAMES, PLACE_NAMES, ADJECTIVES, ADVERBS, PREPOSITIONS, MONTHS, WEEKDAYS):
        words.update(group)
    for noun in PERSONS + THINGS + PLACES + ABSTRACTS:
        words.update((noun, plural(noun)))
    for forms in TRANSITIVE + INTRANSITIVE:
        words.update(forms)
    rng = np.random.default_rng(0)
    for _ in range(20000):
        words.update(general_sentence(rng).split())
    return words
