"""The fixed vocabulary of the fact world: value pools, relations and their templates.

Every relation has several statement templates (a prefix whose continuation is the object) and
question templates (ZsRE style: the answer follows the question after a space). The **last**
template of each list is held out of the training corpus, so generality is measured on a wording
the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

LANGUAGES = ["French", "Spanish", "Finnish", "Swahili", "Korean", "Dutch", "Greek", "Hindi", "Polish", "Turkish"]
OCCUPATIONS = ["architect", "nurse", "pilot", "chemist", "lawyer", "farmer", "journalist", "baker", "surgeon",
               "librarian", "carpenter", "astronomer"]
SPORTS = ["tennis", "chess", "rugby", "cricket", "volleyball", "table tennis", "fencing", "rowing", "golf", "judo"]
INSTRUMENTS = ["violin", "piano", "cello", "flute", "trumpet", "harp", "banjo", "clarinet", "oboe", "accordion"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "silver", "brown"]
PETS = ["cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "ferret"]
FOODS = ["pasta", "sushi", "curry", "pancakes", "soup", "dumplings", "tacos", "porridge", "salad", "noodles"]

COUNTRIES = ["Veldora", "Castrane", "Omberlund", "Quessia", "Tirnavia", "Salvenor", "Durmeca", "Pellicor"]
CITIES = ["Torvale", "Brisk Harbor", "Anselm", "Kelloway", "Marrowfield", "Ostrel", "Port Ivory", "Lindquist",
          "Harrowgate", "Yelmont", "Cobrin", "Saint Oda", "Vashti Falls", "Emberly", "Grauden", "Nolloway"]
COMPANIES = ["Quillon Systems", "Brightwell Foods", "Orrin Motors", "Tessaract Labs", "Halvard Shipping",
             "Mirelle Textiles", "Corvid Media", "Pellam Energy", "Ashgrove Bank", "Zentrik Games"]
UNIVERSITIES = ["Holmwick College", "Tarsk University", "Ferrand Institute", "Lowell Academy", "Brennet University",
                "Calder College", "Iver Polytechnic", "Marlow University"]

# Syllables for person names: two words, each of two or three syllables, so names span several tokens.
NAME_ONSETS = ["b", "br", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "st"]
NAME_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io"]
NAME_CODAS = ["", "", "n", "r", "l", "s", "k", "th", "m"]


@dataclass(frozen=True)
class Relation:
    """One relation of the world: its value pool and how it is said.

    Attributes:
        name: identifier, e.g. ``native_language``.
        pool: the name of the value pool its objects come from.
        subject_kind: ``person``, ``city`` or ``company``.
        statements: prefixes with ``{}`` for the subject; the object follows after a space.
        questions: questions with ``{}`` for the subject; the answer follows after a space.
        ner_type: the CoNLL entity type of its objects (``LOC``, ``ORG``, ``MISC``) or ``None``.
    """

    name: str
    pool: str
    subject_kind: str
    statements: tuple[str, ...]
    questions: tuple[str, ...]
    ner_type: str | None = None

    @property
    def train_statements(self) -> tuple[str, ...]:
        return self.statements[:-1]

    @property
    def heldout_statement(self) -> str:
        return self.statements[-1]

    @property
    def train_questions(self) -> tuple[str, ...]:
        return self.questions[:-1]

    @property
    def heldout_question(self) -> str:
        return self.questions[-1]


RELATIONS: tuple[Relation, ...] = (
    Relation("native_language", "languages", "person",
             ("The native language of {} is", "{} grew up speaking", "{} is a native speaker of",
              "The mother tongue of {} is"),
             ("What is the native language of {}?", "Which language did {} grow up speaking?",
              "What is the mother tongue of {}?"), "MISC"),
    Relation("birth_city", "cities", "person",
             ("{} was born in", "The birthplace of {} is", "{} was born in the city of", "{} came into the world in"),
             ("Where was {} born?", "What is the birthplace of {}?", "In which city did {} come into the world?"),
             "LOC"),
    Relation("residence_city", "cities", "person",
             ("{} lives in", "The home town of {} today is", "{} currently resides in", "These days {} makes a home in"),
             ("Where does {} live?", "In which city does {} reside?", "Which city does {} call home these days?"),
             "LOC"),
    Relation("citizenship", "countries", "person",
             ("{} is a citizen of", "The citizenship of {} is", "{} holds a passport of",
              "{} has the nationality of"),
             ("Which country is {} a citizen of?", "What is the citizenship of {}?",
              "What nationality does {} have?"), "LOC"),
    Relation("occupation", "occupations", "person",
             ("{} works as a", "The profession of {} is", "By profession, {} is a", "{} earns a living as a"),
             ("What is the occupation of {}?", "What does {} do for a living?", "What job does {} have?")),
    Relation("employer", "companies", "person",
             ("{} is employed by", "The employer of {} is", "{} works for", "{} draws a salary from"),
             ("Who employs {}?", "Which company does {} work for?", "Which firm pays the salary of {}?"), "ORG"),
    Relation("university", "universities", "person",
             ("{} studied at", "The alma mater of {} is", "{} graduated from", "{} earned a degree at"),
             ("Where did {} study?", "Which university did {} graduate from?", "What is the alma mater of {}?"),
             "ORG"),
    Relation("sport", "sports", "person",
             ("{} plays", "The favorite sport of {} is", "In free time {} plays", "{} is a keen player of"),
             ("Which sport does {} play?", "What is the favorite sport of {}?", "What game is {} keen on playing?")),
    Relation("instrument", "instruments", "person",
             ("{} plays the", "The instrument of {} is the", "{} performs on the", "{} practices music on the"),
             ("Which instrument does {} play?", "What instrument does {} perform on?",
              "On which instrument does {} practice music?")),
    Relation("favorite_color", "colors", "person",
             ("The favorite color of {} is", "{} likes the color", "{} always dresses in", "{} mostly paints in"),
             ("What is the favorite color of {}?", "Which color does {} like?", "Which color does {} love most?")),
    Relation("pet", "pets", "person",
             ("{} owns a pet", "The pet of {} is a", "At home {} keeps a", "{} takes care of a pet"),
             ("What pet does {} own?", "What kind of pet does {} keep?", "Which animal does {} look after?")),
    Relation("favorite_food", "foods", "person",
             ("The favorite food of {} is", "{} loves to eat", "For dinner {} usually eats", "{} never refuses"),
             ("What is the favorite food of {}?", "What does {} love to eat?", "Which dish does {} never refuse?")),
    Relation("city_country", "countries", "city",
             ("{} is a city in", "The city of {} lies in", "{} is located in", "{} can be found in"),
             ("Which country is {} in?", "In which country does {} lie?", "Where is the city of {} located?"), "LOC"),
    Relation("company_city", "cities", "company",
             ("{} is headquartered in", "The head office of {} is in", "{} has its main office in",
              "The main building of {} stands in"),
             ("Where is {} headquartered?", "In which city is the head office of {}?",
              "Where does {} have its main building?"), "LOC"),
)

RELATION_BY_NAME = {r.name: r for r in RELATIONS}

POOLS: dict[str, list[str]] = {
    "languages": LANGUAGES, "occupations": OCCUPATIONS, "sports": SPORTS, "instruments": INSTRUMENTS,
    "colors": COLORS, "pets": PETS, "foods": FOODS, "countries": COUNTRIES, "cities": CITIES,
    "companies": COMPANIES, "universities": UNIVERSITIES,
}

# One-hop (portability) questions: the person relation, the relation of its object, and the question.
ONE_HOP: tuple[tuple[str, str, str], ...] = (
    ("birth_city", "city_country", "In which country is the city where {} was born?"),
    ("residence_city", "city_country", "In which country is the city where {} lives?"),
    ("employer", "company_city", "In which city is the company that employs {} headquartered?"),
)
