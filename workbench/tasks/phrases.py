"""Generated data for the translation and chatbot presets when no file is given.

English -> French sentences from a small grammar (``sample_phrase``): six subjects, the
verbs be / have / like / see, adjectives that agree in gender and number, nouns with
their gender and article, and negation: "she is not tired ." -> "elle n ' est pas
fatiguée ." The French side has what makes translation more than word-for-word: verb
agreement, gender and number agreement, elision (j ' ai, n ' est) and ne ... pas around
the verb. About a tenth of the sentences are held out by a hash of the English, so the
validation set holds combinations never trained on.

Conversations (``generated_conversations``): greetings, small talk with fixed answers,
colours of things, likes and dislikes, and additions of small numbers, each a
conversation of two or three turns; a chatbot trained on them must carry a word from
the message into the reply (the colour's object, the numbers and their sum).

Both are lowercase and tokenised with spaces, as the tasks' word-level tokens are.
"""
from __future__ import annotations

import random
import zlib

# (English, French, person): person "1s" "2s" "3sm" "3sf" "1p" "3p"
SUBJECTS = [("i", "je", "1s"), ("you", "tu", "2s"), ("he", "il", "3sm"), ("she", "elle", "3sf"),
            ("we", "nous", "1p"), ("they", "ils", "3p")]
_EN_BE = {"1s": "am", "2s": "are", "3sm": "is", "3sf": "is", "1p": "are", "3p": "are"}
_FR_VERBS = {  # French present tense by person
    "être": {"1s": "suis", "2s": "es", "3sm": "est", "3sf": "est", "1p": "sommes", "3p": "sont"},
    "avoir": {"1s": "ai", "2s": "as", "3sm": "a", "3sf": "a", "1p": "avons", "3p": "ont"},
    "aimer": {"1s": "aime", "2s": "aimes", "3sm": "aime", "3sf": "aime", "1p": "aimons", "3p": "aiment"},
    "voir": {"1s": "vois", "2s": "vois", "3sm": "voit", "3sf": "voit", "1p": "voyons", "3p": "voient"},
}
# English adjective -> French (masculine singular, feminine singular, masculine plural)
ADJECTIVES = {"tired": ("fatigué", "fatiguée", "fatigués"), "happy": ("heureux", "heureuse", "heureux"),
              "ready": ("prêt", "prête", "prêts"), "sick": ("malade", "malade", "malades"),
              "busy": ("occupé", "occupée", "occupés"), "small": ("petit", "petite", "petits"),
              "tall": ("grand", "grande", "grands"), "cold": ("froid", "froide", "froids")}
# English noun -> (French noun, gender)
NOUNS = {"cat": ("chat", "m"), "dog": ("chien", "m"), "car": ("voiture", "f"), "book": ("livre", "m"),
         "house": ("maison", "f"), "key": ("clé", "f"), "apple": ("pomme", "f"), "tree": ("arbre", "m")}
_EN_VERBS = {"have": ("have", "has"), "like": ("like", "likes"), "see": ("see", "sees")}
_FR_OF = {"have": "avoir", "like": "aimer", "see": "voir"}
_VOWELS = tuple("aeiouéèêh")


def _elide(word: str, following: str) -> list[str]:
    """je / ne / le / la / de before a vowel -> j ' / n ' / l ' / d ' (as word tokens)."""
    if word in ("je", "ne", "le", "la", "de") and following.startswith(_VOWELS):
        return [word[0], "'"]
    return [word]


def _join(words: list[str]) -> list[str]:
    out: list[str] = []
    for i, w in enumerate(words):
        out += _elide(w, words[i + 1]) if i + 1 < len(words) else [w]
    return out


def make_phrase(subject: int, verb: str, obj: str, negative: bool, article: str = "the") -> tuple[str, str]:
    """One sentence of the grammar: verb "be" takes an adjective, the others a noun."""
    en_subj, fr_subj, person = SUBJECTS[subject]
    third = person in ("3sm", "3sf")
    if verb == "be":
        en = [en_subj, _EN_BE[person]] + (["not"] if negative else []) + [obj]
        forms = ADJECTIVES[obj]
        adj = forms[1] if person == "3sf" else forms[2] if person in ("1p", "3p") else forms[0]
        core = [_FR_VERBS["être"][person]]
        fr = [fr_subj] + (["ne"] + core + ["pas"] if negative else core) + [adj]
    else:
        plain, s_form = _EN_VERBS[verb]
        if negative:
            en = [en_subj, "does" if third else "do", "not", plain]
        else:
            en = [en_subj, s_form if third else plain]
        noun, gender = NOUNS[obj]
        en += ["an" if article == "a" and obj.startswith(tuple("aeiou")) else article, obj]
        core = [_FR_VERBS[_FR_OF[verb]][person]]
        if article == "a":
            det = ["de"] if negative else (["un"] if gender == "m" else ["une"])  # pas de: no article
        else:
            det = ["le"] if gender == "m" else ["la"]
        fr = [fr_subj] + (["ne"] + core + ["pas"] if negative else core) + det + [noun]
    return " ".join(en + ["."]), " ".join(_join(fr + ["."]))


def all_phrases() -> list[tuple[str, str]]:
    out = []
    for s in range(len(SUBJECTS)):
        for neg in (False, True):
            for adj in ADJECTIVES:
                out.append(make_phrase(s, "be", adj, neg))
            for verb in _EN_VERBS:
                for noun in NOUNS:
                    for article in ("the", "a"):
                        out.append(make_phrase(s, verb, noun, neg, article))
    return out


def held_out(text: str) -> bool:
    """A fixed ~10% of the sentences (by a hash of the English) are validation only."""
    return zlib.crc32(text.encode("utf-8")) % 10 == 0


_PHRASES: dict[bool, list[tuple[str, str]]] = {}


def sample_phrase(rng: random.Random, validation: bool) -> tuple[str, str]:
    if validation not in _PHRASES:
        _PHRASES[validation] = [p for p in all_phrases() if held_out(p[0]) == validation]
    return rng.choice(_PHRASES[validation])


# ----------------------------------------------------------------------------- conversations

_GREETINGS = ["hello", "hi", "good morning", "hey there", "good evening"]
_SMALL_TALK = [("how are you ?", "i am fine , thank you ."), ("what is your name ?", "i am a recurrent network ."),
               ("who made you ?", "a workbench trained me ."), ("are you a robot ?", "i am a program ."),
               ("do you sleep ?", "no , i never sleep ."), ("where do you live ?", "i live in a computer .")]
_COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "sun": "yellow", "night": "black", "blood": "red",
            "sea": "blue", "leaf": "green", "coal": "black", "milk": "white", "banana": "yellow", "cherry": "red"}
_LIKES = {"music": True, "books": True, "cats": True, "chess": True, "rain": False, "noise": False,
          "spiders": False, "traffic": False}
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]


def generated_conversations(count: int = 1500, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kind = rng.randrange(5)
        if kind == 0:
            hello = rng.choice(_GREETINGS)
            out.append([hello, f"{hello} ! how are you ?", rng.choice(["fine , thanks .", "i am well ."]),
                        ][: rng.choice((2, 3))])
        elif kind == 1:
            out.append(list(rng.choice(_SMALL_TALK)))
        elif kind == 2:
            thing = rng.choice(list(_COLOURS))
            out.append([f"what colour is the {thing} ?", f"the {thing} is {_COLOURS[thing]} ."])
        elif kind == 3:
            thing = rng.choice(list(_LIKES))
            out.append([f"do you like {thing} ?",
                        f"yes , i like {thing} ." if _LIKES[thing] else f"no , i do not like {thing} ."])
        else:
            a, b = rng.randrange(11), rng.randrange(11)
            out.append([f"what is {_NUMBER_WORDS[a]} plus {_NUMBER_WORDS[b]} ?",
                        f"{_NUMBER_WORDS[a]} plus {_NUMBER_WORDS[b]} is {_NUMBER_WORDS[a + b]} ."])
    return out
