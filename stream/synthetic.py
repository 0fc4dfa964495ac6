"""A seeded generator of synthetic review records, with named scenarios for demos and tests.

Everything here is pure and synchronous: :func:`generate` yields :class:`GeneratedRecord`
values, each holding the bytes a producer would publish (``value``, keyed by ``product_id``)
together with the ground truth a test needs: the valid :class:`~stream.events.ReviewEvent`, or
for a deliberately malformed record the dead-letter :class:`~stream.events.Reason` the validator
must give it.

The review texts are composed from this module's own phrase bank (opening, remarks on fit,
fabric, colour and quality, closing) in the style of women's clothing reviews. The wording
carries the sentiment: the star rating is drawn so that
:func:`~stream.events.sentiment_from_rating` gives the intended class, and a model trained on
real clothing reviews reads the class back from the text. Neutral texts are lukewarm or mixed,
as real three-star reviews are.

Scenarios (:data:`SCENARIOS`)::

    steady           stationary: 20% negative, 20% neutral, 60% positive in every category
    negative-surge   from the change point one category (Dresses) turns 60% negative
    prior-shift      from the change point every category is 50% negative, 20% neutral
    data-drift       from the change point texts are 2-3 times longer, mostly call and chat
                     transcripts; the sentiment mix does not change
    bad-input        steady, with 5% malformed records covering every producer-side reason

Same arguments, same bytes: the generator draws from :class:`random.Random` seeded with
``seed`` and never reads the clock. Records before a scenario's change point are the same as
``steady``'s, and ``bad-input``'s valid records are ``steady``'s records at the same places
(review ids aside: they are drawn per scenario and seed, so streams never share one).
"""

from __future__ import annotations

import bisect
import json
import random
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from monitors.catalog import CATEGORY_WEIGHTS, STEADY_MIX
from stream.events import CHANNELS, Reason, ReviewEvent

__all__ = [
    "CATEGORY_WEIGHTS",
    "CHANNEL_WEIGHTS",
    "DEFAULT_START",
    "MALFORMED_REASONS",
    "SCENARIOS",
    "SEGMENT_WEIGHTS",
    "GeneratedRecord",
    "Scenario",
    "encode_record",
    "event_times",
    "generate",
]

#: Where simulated time starts unless told otherwise.
DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)

#: The smallest ``max_text_bytes`` the generator accepts (every valid text is cut to fit).
MIN_TEXT_BYTES: Final = 500

#: Where reviews come from: mostly the web shop and the app.
CHANNEL_WEIGHTS: Final[Mapping[str, float]] = {
    "web": 0.44,
    "app": 0.30,
    "email": 0.08,
    "social": 0.07,
    "chat": 0.05,
    "partner": 0.04,
    "call": 0.02,
}

#: After the change point of ``data-drift``: feedback taken by phone and chat support staff.
_DRIFT_CHANNEL_WEIGHTS: Final[Mapping[str, float]] = {
    "call": 0.40,
    "chat": 0.35,
    "web": 0.10,
    "email": 0.07,
    "app": 0.05,
    "social": 0.02,
    "partner": 0.01,
}

#: Customer segments (``None``: the producer did not know).
SEGMENT_WEIGHTS: Final[Mapping[str | None, float]] = {
    "new": 0.22,
    "returning": 0.45,
    "loyal": 0.20,
    "vip": 0.08,
    None: 0.05,
}

#: The reasons ``bad-input`` covers: every one a producer can cause (scoring_rejected is the
#: endpoint's verdict, not the producer's).
MALFORMED_REASONS: Final[tuple[Reason, ...]] = tuple(
    r for r in Reason if r is not Reason.SCORING_REJECTED
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class GeneratedRecord:
    """One record as a producer publishes it, with its ground truth."""

    key: bytes  #: product_id, for Kafka keys / Kinesis partition keys
    value: bytes  #: the raw record (JSON UTF-8, or malformed bytes)
    event: ReviewEvent | None  #: the valid event (None for malformed records)
    expected_reason: Reason | None  #: for malformed records: the dead-letter reason


@dataclass(frozen=True, slots=True)
class Scenario:
    """What a scenario changes, and which alerts the monitors should raise for it.

    ``mix_before`` / ``mix_after`` are (negative, neutral, positive) shares. From record
    ``int(change_at * events)`` on, ``mix_after`` applies to ``affected_category`` ("all" for
    every category), texts are ``length_factor_after`` times as long and channels follow
    ``channel_mix_after``. ``expected_alerts`` are (alert name, category) pairs that must fire;
    ``tolerated_alerts`` are consequences that may fire as well (a surge in one category also
    moves the overall negative share and the rating distribution a little); anything else is a
    false alarm.
    """

    name: str
    description: str
    change_at: float | None = None
    affected_category: str = "all"
    mix_before: tuple[float, float, float] = STEADY_MIX
    mix_after: tuple[float, float, float] | None = None
    length_factor_after: float = 1.0
    channel_mix_after: tuple[tuple[str, float], ...] | None = None
    malformed_fraction: float = 0.0
    expected_alerts: frozenset[tuple[str, str]] = frozenset()
    tolerated_alerts: frozenset[tuple[str, str]] = frozenset()

    def __post_init__(self) -> None:
        if self.change_at is not None and not 0.0 <= self.change_at <= 1.0:
            raise ValueError(f"change_at must be a fraction of the stream in [0, 1], got {self}")
        for mix in (self.mix_before, self.mix_after):
            if mix is not None and (min(mix) < 0 or abs(sum(mix) - 1.0) > 1e-9):
                raise ValueError(f"a mix is (negative, neutral, positive) summing to 1, got {mix}")
        if self.affected_category != "all" and self.affected_category not in CATEGORY_WEIGHTS:
            raise ValueError(
                f"affected_category must be 'all' or one of {', '.join(CATEGORY_WEIGHTS)}"
            )
        if self.length_factor_after < 1.0:
            raise ValueError("length_factor_after must be >= 1")
        if self.channel_mix_after is not None and any(
            c not in CHANNELS or w < 0 for c, w in self.channel_mix_after
        ):
            raise ValueError(f"channel_mix_after takes (channel, weight) pairs of {CHANNELS}")
        if not 0.0 <= self.malformed_fraction <= 1.0:
            raise ValueError("malformed_fraction must be in [0, 1]")

    def change_index(self, events: int) -> int | None:
        """Index of the first record after the change point (None: nothing changes)."""
        return None if self.change_at is None else int(self.change_at * events)

    def mix_for(self, category: str, changed: bool) -> tuple[float, float, float]:
        """The (negative, neutral, positive) shares of ``category`` before/after the change."""
        if changed and self.mix_after is not None and self.affected_category in ("all", category):
            return self.mix_after
        return self.mix_before


SCENARIOS: Final[Mapping[str, Scenario]] = {
    "steady": Scenario("steady", "stationary mix: 20% negative, 20% neutral, 60% positive"),
    "negative-surge": Scenario(
        "negative-surge",
        "from the middle of the stream Dresses turn 60% negative (from 20%)",
        change_at=0.5,
        affected_category="Dresses",
        mix_after=(0.60, 0.10, 0.30),
        expected_alerts=frozenset({("SentimentShift", "Dresses")}),
        # Dresses are 14% of the stream: the overall negative share rises by about 6 points.
        tolerated_alerts=frozenset(
            {("SentimentShift", "all"), ("PriorShift", "all"), ("DataDrift", "all")}
        ),
    ),
    "prior-shift": Scenario(
        "prior-shift",
        "from the middle of the stream every category is 50% negative, 20% neutral",
        change_at=0.5,
        mix_after=(0.50, 0.20, 0.30),
        expected_alerts=frozenset({("PriorShift", "all")}),
        # More negative reviews everywhere: the negative share rises in every category, and
        # the ratings and the texts (hence the model's confidence) shift with the classes.
        tolerated_alerts=frozenset(
            {("SentimentShift", c) for c in ("all", *CATEGORY_WEIGHTS)} | {("DataDrift", "all")}
        ),
    ),
    "data-drift": Scenario(
        "data-drift",
        "from the middle of the stream reviews are 2-3x longer call and chat transcripts",
        change_at=0.5,
        length_factor_after=2.5,
        channel_mix_after=tuple(_DRIFT_CHANNEL_WEIGHTS.items()),
        expected_alerts=frozenset({("DataDrift", "all")}),
    ),
    "bad-input": Scenario(
        "bad-input",
        "steady, with 5% malformed records covering every producer-side reason code",
        malformed_fraction=0.05,
    ),
}


# --------------------------------------------------------------------------------------------
# Catalogue: what is sold in each category, and product ids.

# (noun, plural) per category; a review talks about one of them.
_NOUNS: Final[Mapping[str, tuple[tuple[str, bool], ...]]] = {
    "Dresses": (("dress", False), ("maxi dress", False), ("midi dress", False),
                ("shirt dress", False), ("wrap dress", False), ("slip dress", False)),
    "Knits": (("top", False), ("tee", False), ("knit top", False), ("tunic", False),
              ("henley", False), ("swing top", False)),
    "Blouses": (("blouse", False), ("button-down", False), ("peasant top", False),
                ("shirt", False), ("tunic blouse", False)),
    "Sweaters": (("sweater", False), ("pullover", False), ("cardigan", False),
                 ("turtleneck", False), ("cowl neck sweater", False)),
    "Pants": (("pants", True), ("trousers", True), ("wide-leg pants", True),
              ("culottes", True), ("cropped pants", True)),
    "Jeans": (("jeans", True), ("skinny jeans", True), ("boyfriend jeans", True),
              ("flare jeans", True), ("cropped jeans", True)),
    "Fine gauge": (("sweater", False), ("cardigan", False), ("lightweight pullover", False),
                   ("sweater shell", False), ("fine knit top", False)),
    "Skirts": (("skirt", False), ("pencil skirt", False), ("midi skirt", False),
               ("mini skirt", False), ("pleated skirt", False)),
    "Jackets": (("jacket", False), ("denim jacket", False), ("blazer", False),
                ("moto jacket", False), ("utility jacket", False)),
    "Outerwear": (("coat", False), ("parka", False), ("vest", False), ("trench coat", False),
                  ("puffer coat", False)),
    "Shorts": (("shorts", True), ("denim shorts", True), ("linen shorts", True),
               ("chino shorts", True)),
    "Lounge": (("lounge pants", True), ("hoodie", False), ("lounge set", False),
               ("sweatshirt", False), ("joggers", True)),
    "Swim": (("swimsuit", False), ("bikini top", False), ("one-piece", False),
             ("bikini bottoms", True), ("cover-up", False)),
    "Sleep": (("pajamas", True), ("pajama set", False), ("nightgown", False),
              ("sleep shorts", True), ("robe", False)),
    "Trend": (("top", False), ("jumpsuit", False), ("poncho", False), ("kimono", False),
              ("romper", False)),
    "Legwear": (("leggings", True), ("tights", True), ("socks", True), ("leg warmers", True)),
    "Intimates": (("bra", False), ("bralette", False), ("bodysuit", False), ("slip", False)),
    "Layering": (("cami", False), ("tank", False), ("layering tee", False),
                 ("tank top", False)),
}  # fmt: skip

# Product id prefix and number of products per category (ids are fixed, not drawn).
_CATALOGUE: Final[Mapping[str, tuple[str, int]]] = {
    "Dresses": ("DRS", 60), "Knits": ("KNT", 48), "Blouses": ("BLS", 40),
    "Sweaters": ("SWT", 30), "Pants": ("PNT", 28), "Jeans": ("JNS", 24),
    "Fine gauge": ("FGG", 22), "Skirts": ("SKT", 22), "Jackets": ("JKT", 18),
    "Outerwear": ("OTW", 16), "Shorts": ("SHT", 14), "Lounge": ("LNG", 14),
    "Swim": ("SWM", 16), "Sleep": ("SLP", 12), "Trend": ("TRD", 10),
    "Legwear": ("LGW", 10), "Intimates": ("INT", 12), "Layering": ("LYR", 8),
}  # fmt: skip

_COLOURS: Final = (
    "black", "navy", "ivory", "olive", "rust", "blush", "emerald", "mustard", "charcoal",
    "coral", "teal", "burgundy", "grey", "cream", "red", "cobalt", "lavender", "camel",
    "white", "floral print", "pink", "moss green",
)  # fmt: skip
_SIZES: Final = (
    "xs", "small", "medium", "large", "xl", "petite small", "petite xs", "0", "2", "4", "6",
    "8", "10", "12", "14", "m petite", "size 6",
)  # fmt: skip
_BODIES: Final = (
    "5'2\" and 115 lbs", "5'4\" and 125 lbs", "5'5\" and 140 lbs", "5'6\" and 130 lbs",
    "5'7\" and 150 lbs", "5'8\" and 135 lbs", "5'3\" and 160 lbs", "5'9\" and 145 lbs",
    "5'1\" and 105 lbs", "5'6\" with a 34dd chest", "5'4\" and curvy", "5'10\" and athletic",
    "petite and pear shaped", "a size 8 with broad shoulders", "5'5\" with long legs",
)  # fmt: skip
_OCCASIONS: Final = (
    "a wedding", "work", "a summer vacation", "the holidays", "date night", "a baby shower",
    "everyday wear", "a family photo shoot", "a trip to Italy", "my birthday", "church",
    "the office", "brunch with friends", "a graduation",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Phrase bank. Placeholders: {this} "this dress" / "these jeans", {This}, {it} "it" / "they",
# {It}, {obj} "it" / "them", {is} "is" / "are", {was} "was" / "were", {fits} "fits" / "fit",
# {runs} "runs" / "run", {looks} "looks" / "look", {has} "has" / "have", {item} the noun,
# {colour}, {size}, {body}, {occasion}.

_POSITIVE: Final[Mapping[str, tuple[str, ...]]] = {
    "open": (
        "I love this {item}!",
        "Absolutely love {this}.",
        "{This} {is} gorgeous.",
        "So happy with this purchase.",
        "I love love love {this}!",
        "{This} {is} perfect.",
        "Beautiful {item}, even prettier in person.",
        "I bought {this} in {colour} and I love {obj}.",
        "What a great find!",
        "I was hesitant at first, but I am so glad I ordered {this}.",
        "My new favorite {item}!",
        "Gorgeous {item}!",
        "I get compliments every time I wear {this}.",
        "{This} {is} even more beautiful in person.",
        "Such pretty details on {this}.",
        "I tried {this} on in the store and had to have {obj}.",
        "Love, love, love!",
        "I am obsessed with {this}.",
        "Stunning {item}, I love {obj}.",
        "Perfect {item}!",
    ),
    "fit": (
        "{It} {fits} perfectly and {is} so flattering.",
        "Fits true to size; I ordered my usual {size} and {it} {fits} like a glove.",
        "The cut is very flattering and hides my problem areas.",
        "{It} {fits} true to size and the length is perfect on me.",
        "The fit is perfect, not too tight and not too loose.",
        "I am {body} and the {size} fits perfectly.",
        "So flattering on my curvy figure.",
        "The petite sizing is spot on and {it} {fits} beautifully.",
        "{It} {drapes} beautifully and {is} very flattering.",
        "The fit is amazing and so flattering on.",
        "I am {body} and the {size} is perfect, true to size.",
    ),
    "fabric": (
        "The fabric is so soft and comfortable.",
        "So comfortable, I could wear {obj} all day.",
        "The material is soft, lightweight and breathable.",
        "Great quality fabric that feels luxurious.",
        "Lovely soft fabric with a nice weight to {obj}.",
        "The material is soft and cozy and so comfortable.",
        "Super soft and comfy, perfect for everyday.",
        "The fabric is beautiful and drapes nicely.",
    ),
    "colour": (
        "The {colour} is gorgeous, rich and true to the photos.",
        "The color is beautiful in person.",
        "The {colour} is gorgeous and even prettier in person.",
        "I love the color, and the details are adorable.",
        "The {colour} is a beautiful color that goes with everything.",
        "I love the {colour}; it is so pretty and versatile.",
    ),
    "quality": (
        "Well made, with beautiful details.",
        "Excellent quality, and I love the details.",
        "{It} washed beautifully and still {looks} brand new.",
        "The stitching and details are lovely.",
        "Great quality, you can tell {it} {is} well made.",
        "Wonderful quality, soft and beautifully made.",
    ),
    "close": (
        "Highly recommend!",
        "I will be ordering {obj} in another color.",
        "Worth every penny.",
        "Definitely a keeper.",
        "Run, don't walk!",
        "Would buy again in a heartbeat.",
        "I wear {obj} all the time.",
        "Five stars, I love {obj}!",
        "Perfect for work or the weekend.",
        "I can't recommend {this} enough.",
        "I love {obj} so much that I ordered a second color.",
        "So glad I bought {obj}, I love {obj}.",
        "A wonderful addition to my closet.",
        "Perfect for {occasion}, I love {obj}!",
    ),
    "caveat": (
        "My only wish is that {it} had pockets, but I still love {obj}.",
        "I sized down, and now {it} {is} perfect.",
        "{It} {is} a little long on me, but still perfect with heels.",
        "The price is a little high, but {it} {is} worth it.",
    ),
}

_NEGATIVE: Final[Mapping[str, tuple[str, ...]]] = {
    "open": (
        "I was so disappointed with {this}.",
        "Very disappointed.",
        "I really wanted to love {this}, but {it} {was} a total miss.",
        "Sadly {this} went back.",
        "What a letdown.",
        "{This} looked so cute online, but in person {it} {is} awful.",
        "Do not buy {this}.",
        "I am returning {this}.",
        "Huge disappointment for the price.",
        "I had high hopes for {this}, and I was very disappointed.",
        "Unfortunately {this} {was} a disaster.",
        "Terrible {item}.",
        "I was excited to order {this}, but what a disappointment.",
        "I hate to leave a bad review, but {this} {is} awful.",
        "Returned.",
    ),
    "fit": (
        "{It} {runs} small; I could barely get {obj} on.",
        "{It} {runs} very small and the {size} was way too tight.",
        "The fit is terrible, boxy and shapeless.",
        "{It} {runs} huge and {is} completely unflattering.",
        "The cut is strange and made me look pregnant.",
        "Way too short and tight in all the wrong places.",
        "I am {body} and the {size} was way too tight.",
        "Unflattering on me, it made me look wide and frumpy.",
        "The proportions are all wrong and the fit is awful.",
        "{It} {runs} so small that I could hardly move in {obj}.",
        "I am {body} and {it} looked like a sack on me.",
    ),
    "fabric": (
        "The fabric is cheap and thin.",
        "The material is itchy and scratchy against the skin.",
        "The fabric feels cheap, like a costume.",
        "{It} {is} completely see-through; the fabric is cheap.",
        "So itchy that I took {obj} off after five minutes.",
        "The material is stiff, itchy and uncomfortable.",
        "The fabric is thin and cheap and wrinkles terribly.",
    ),
    "colour": (
        "The color looks nothing like the pictures; the {colour} is dull and drab.",
        "The color was washed out and unflattering.",
        "The print looked cheap in person.",
        "The {colour} looked muddy and dull, nothing like the photo.",
    ),
    "quality": (
        "{It} fell apart after one wash.",
        "The seams were already coming apart when {it} arrived.",
        "Poor quality, with loose threads everywhere and a hole by the seam.",
        "The zipper broke the second time I wore {obj}.",
        "{It} pilled after the first wear.",
        "{It} shrank in the wash and {is} now ruined.",
        "Cheap quality that fell apart within a week.",
    ),
    "close": (
        "{It} went back the next day.",
        "Returned.",
        "Save your money.",
        "I would not recommend {this}.",
        "Back {it} {go}.",
        "Very disappointed; I returned {obj}.",
        "Not worth the price at all.",
        "Waste of money.",
        "Sending {obj} back, so disappointed.",
        "Definitely returning {obj}.",
        "I returned {obj} for a refund.",
    ),
    "caveat": (
        "The color was nice, but that is the only good thing about {obj}.",
        "I wanted to love {obj}, but it just did not work.",
    ),
}

_NEUTRAL: Final[Mapping[str, tuple[str, ...]]] = {
    "open": (
        "{This} {is} pretty, but just okay.",
        "{It} {is} fine, but I expected a bit more.",
        "I have mixed feelings about {this}.",
        "{This} {is} cute, but just average.",
        "Not sure about {this} yet, but maybe.",
        "{This} {is} cute but not quite what I expected.",
        "I am on the fence about {this}.",
        "Cute {item}, but just okay.",
        "Decent {item}, but I expected more.",
        "I wanted to love {this}, and I do like {obj}, but not as much as I hoped.",
        "Three stars: cute, but not quite right.",
        "{This} {is} nice, but I am not sure it is worth the price.",
        "It's cute, but just okay.",
        "Just okay, but I might keep {obj}.",
    ),
    "fit": (
        "{It} {is} okay on me, though the length is a little awkward.",
        "{It} {runs} a little large, so I might size down.",
        "The fit is fine, but the waist sits a bit oddly on me.",
        "I am {body}, and the {size} is a bit loose, though still wearable.",
        "{It} {runs} a bit big; I would size down if I ordered again.",
        "The fit is okay, but the waist sits a little high on me.",
        "I ordered my usual {size}, but {it} {is} a bit snug in the waist, so I'm not sure.",
    ),
    "fabric": (
        "The fabric is soft but thinner than I expected.",
        "The material is fine, but wrinkles easily.",
        "The fabric is okay, a little heavier than I expected.",
        "Wearable enough, but the fabric is just average.",
        "The material feels a bit synthetic, but it's fine.",
    ),
    "colour": (
        "The color is pretty, but the fit is a bit off.",
        "I like the {colour}, but the cut is a bit boxy.",
        "The print is cute, but the colors are more muted than in the photo.",
        "The {colour} is pretty, but a little different than I expected.",
    ),
    "quality": (
        "Nice design, but the quality is just average.",
        "The quality is okay for the price, I guess.",
        "The quality seems just average, but maybe {it} will hold up.",
        "The quality seems fine, but not as nice as I hoped.",
    ),
    "close": (
        "Not sure if I will keep {obj}.",
        "I might keep {obj} since {it} {was} on sale.",
        "Fine for the price, I guess.",
        "Maybe I will try a different size.",
        "I am keeping {obj} for now, but I am not thrilled.",
        "Overall, {it} {is} cute but just okay.",
        "Somewhere in the middle for me.",
        "I would probably wait for a sale before buying {obj} again.",
        "I might keep {obj}, but {it} won't be a favorite.",
        "It's cute, just not quite what I expected.",
        "I might wait for a sale next time.",
    ),
    "caveat": (
        "Maybe okay for lounging around the house, though.",
        "Fine for running errands, I guess.",
    ),
}

_BANK: Final[Mapping[int, Mapping[str, tuple[str, ...]]]] = {
    -1: _NEGATIVE,
    0: _NEUTRAL,
    1: _POSITIVE,
}

# Class-free context, as real reviews often give.
_CONTEXT: Final = (
    "I bought {this} for {occasion}.",
    "I ordered {this} online after seeing {obj} in the catalog.",
    "I usually wear a {size} in this brand.",
    "I am {body}, for reference.",
    "I ordered the {colour} in a {size}.",
    "I picked up {this} in the {colour} last week.",
    "I tried on the {size} and the next size up.",
)

# Transcript framing of call and chat feedback (data-drift).
_TRANSCRIPT_OPEN: Final[Mapping[str, tuple[str, ...]]] = {
    "call": (
        "Customer call. Customer: Hi, I'm calling about the {item} I ordered.",
        "Phone feedback. Customer said: I wanted to tell you about {this}.",
        "Call notes. Customer: Hello, I have some feedback on the {colour} {item}.",
    ),
    "chat": (
        "Chat transcript. Customer: hi, quick feedback on the {item} I got.",
        "Live chat. Customer: Hello! I received {this} yesterday.",
        "Chat. Customer: hey, I wanted to say something about the {colour} {item}.",
    ),
}
_TRANSCRIPT_FILLER: Final = (
    "My order came in two boxes and the {item} {was} in the second one.",
    "I have been shopping with you for a few years now.",
    "I ordered {obj} on a Tuesday and {it} arrived on Friday.",
    "I wore {obj} for {occasion} over the weekend.",
    "I usually wear a {size}, and that is what I ordered.",
    "My sister bought the same {item} in another color.",
)
_TRANSCRIPT_CLOSE: Final = (
    "Support: Thank you for the feedback, I have noted it.",
    "Support: Thanks for letting us know.",
    "Support: I have passed that on to the product team.",
)

_BODY_KINDS: Final = ("fit", "fabric", "colour", "quality")
# Every remark of a class, for the long texts of data-drift.
_REMARKS: Final[Mapping[int, tuple[str, ...]]] = {
    c: tuple(t for kind in _BODY_KINDS for t in bank[kind]) for c, bank in _BANK.items()
}


def _forms(noun: str, plural: bool) -> dict[str, str]:
    this = f"these {noun}" if plural else f"this {noun}"
    it = "they" if plural else "it"
    return {
        "item": noun,
        "this": this,
        "This": this.capitalize(),
        "it": it,
        "It": it.capitalize(),
        "obj": "them" if plural else "it",
        "is": "are" if plural else "is",
        "was": "were" if plural else "was",
        "fits": "fit" if plural else "fits",
        "runs": "run" if plural else "runs",
        "looks": "look" if plural else "looks",
        "has": "have" if plural else "has",
        "drapes": "drape" if plural else "drapes",
        "go": "go" if plural else "goes",
    }


# --------------------------------------------------------------------------------------------
# Event times.


def event_times(
    n: int,
    rng: random.Random,
    *,
    start: datetime = DEFAULT_START,
    span: timedelta = timedelta(hours=48),
    late_fraction: float = 0.01,
    max_lateness: timedelta = timedelta(minutes=2),
) -> Iterator[datetime]:
    """``n`` event times spread evenly over ``span`` from ``start``, in arrival order.

    Each time is jittered within its slot (millisecond resolution); ``late_fraction`` of them
    arrive late, up to ``max_lateness`` behind the records around them.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    if n < 0 or span < timedelta(0) or max_lateness < timedelta(0):
        raise ValueError("n, span and max_lateness must not be negative")
    if not 0.0 <= late_fraction <= 1.0:
        raise ValueError("late_fraction must be in [0, 1]")
    step_ms = span / timedelta(milliseconds=1) / max(n, 1)
    late_ms = max_lateness / timedelta(milliseconds=1)
    base = start.astimezone(UTC)
    for i in range(n):
        ms = (i + rng.random()) * step_ms
        if rng.random() < late_fraction:
            ms -= rng.uniform(0.05, 1.0) * late_ms
        yield base + timedelta(milliseconds=round(ms))


# --------------------------------------------------------------------------------------------
# The generator.


def encode_record(doc: object) -> bytes:
    """The JSON bytes a producer publishes for a wire-form document."""
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def generate(
    scenario: str | Scenario = "steady",
    *,
    events: int = 20_000,
    seed: int = 7,
    start: datetime = DEFAULT_START,
    span: timedelta = timedelta(hours=48),
    late_fraction: float = 0.01,
    max_lateness: timedelta = timedelta(minutes=2),
    max_text_bytes: int = 5_000,
) -> Iterator[GeneratedRecord]:
    """Yield ``events`` records of ``scenario`` (a name in :data:`SCENARIOS` or a
    :class:`Scenario`), their event times spread over ``span`` from ``start``.

    ``max_text_bytes`` is the validator's text limit: valid texts are kept within it, and the
    oversize records of ``bad-input`` exceed it.
    """
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
        scenario = SCENARIOS[scenario]
    if events < 0:
        raise ValueError(f"events must not be negative, got {events}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    if max_text_bytes < MIN_TEXT_BYTES:
        raise ValueError(f"max_text_bytes must be at least {MIN_TEXT_BYTES}")
    return _Generator(scenario, events, seed, max_text_bytes).run(
        event_times(
            events,
            random.Random(f"times:{seed}"),  # noqa: S311 - seeded simulation
            start=start,
            span=span,
            late_fraction=late_fraction,
            max_lateness=max_lateness,
        )
    )


def _cum(weights: Sequence[float]) -> list[float]:
    """Cumulative weights normalised to end at 1.0 (for :func:`_pick`)."""
    total = sum(weights)
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc / total)
    out[-1] = 1.0
    return out


def _pick(rng: random.Random, population: Sequence[_T], cum: Sequence[float]) -> _T:
    """One weighted draw (``random.choices`` for a single item, without its overhead)."""
    return population[bisect.bisect_right(cum, rng.random())]


class _Generator:
    def __init__(self, scenario: Scenario, events: int, seed: int, max_text_bytes: int) -> None:
        self.sc = scenario
        self.events = events
        self.max_text_bytes = max_text_bytes
        # Seeded simulation, not security: the same seed must give the same stream.
        self.rng = random.Random(seed)  # noqa: S311
        self.id_rng = random.Random(f"ids:{scenario.name}:{seed}")  # noqa: S311
        self.bad_rng = random.Random(f"bad:{seed}")  # noqa: S311
        self.categories = list(CATEGORY_WEIGHTS)
        self.category_cum = _cum(list(CATEGORY_WEIGHTS.values()))
        self.channels = list(CHANNEL_WEIGHTS)
        self.channel_cum = _cum(list(CHANNEL_WEIGHTS.values()))
        after = scenario.channel_mix_after
        self.channels_after = [c for c, _ in after] if after else self.channels
        self.channel_cum_after = _cum([w for _, w in after]) if after else self.channel_cum
        self.segments = list(SEGMENT_WEIGHTS)
        self.segment_cum = _cum(list(SEGMENT_WEIGHTS.values()))
        self.products: dict[str, tuple[list[str], list[float]]] = {}
        for cat, (prefix, count) in _CATALOGUE.items():
            ids = [f"{prefix}-{1001 + 37 * k}" for k in range(count)]
            # A few best sellers collect most reviews (Zipf-like popularity).
            self.products[cat] = (ids, _cum([1.0 / (k + 1) ** 0.9 for k in range(count)]))
        self.forms = {cat: [_forms(n, p) for n, p in nouns] for cat, nouns in _NOUNS.items()}

    def run(self, times: Iterator[datetime]) -> Iterator[GeneratedRecord]:
        sc = self.sc
        change = sc.change_index(self.events)
        bad: dict[int, Reason] = {}
        n_bad = round(self.events * sc.malformed_fraction)
        if n_bad:
            spots = sorted(self.bad_rng.sample(range(self.events), n_bad))
            reasons = [MALFORMED_REASONS[j % len(MALFORMED_REASONS)] for j in range(n_bad)]
            self.bad_rng.shuffle(reasons)
            bad = dict(zip(spots, reasons, strict=True))
        for i, when in enumerate(times):
            changed = change is not None and i >= change
            event = self._event(when, changed)
            doc = event.to_json_dict()
            reason = bad.get(i)
            if reason is None:
                yield GeneratedRecord(event.product_id.encode(), encode_record(doc), event, None)
            else:
                value = self._malformed(reason, doc, event)
                yield GeneratedRecord(event.product_id.encode(), value, None, reason)

    # -- valid events -------------------------------------------------------------------------

    def _event(self, when: datetime, changed: bool) -> ReviewEvent:
        rng = self.rng
        category = _pick(rng, self.categories, self.category_cum)
        ids, cum = self.products[category]
        product_id = _pick(rng, ids, cum)
        neg, neu, _ = self.sc.mix_for(category, changed)
        u = rng.random()
        sentiment = -1 if u < neg else (0 if u < neg + neu else 1)
        if sentiment == -1:
            rating = 1 if rng.random() < 0.45 else 2
        elif sentiment == 0:
            rating = 3
        else:
            rating = 5 if rng.random() < 0.7 else 4
        if changed and self.sc.channel_mix_after is not None:
            channel = _pick(rng, self.channels_after, self.channel_cum_after)
        else:
            channel = _pick(rng, self.channels, self.channel_cum)
        segment = _pick(rng, self.segments, self.segment_cum)
        forms = rng.choice(self.forms[category])
        long = changed and self.sc.length_factor_after > 1.0
        text = self._text(sentiment, forms, channel if long else None)
        extra = {"app_version": f"5.{rng.randint(8, 14)}.{rng.randint(0, 3)}"}
        return ReviewEvent(
            review_id=str(uuid.UUID(int=self.id_rng.getrandbits(128), version=4)),
            product_id=product_id,
            product_category=category,
            review_text=text,
            channel=channel,
            event_time=when,
            rating=rating,
            language="en",
            customer_segment=segment,
            extra=extra if channel == "app" else {},
        )

    def _text(self, sentiment: int, forms: dict[str, str], transcript: str | None) -> str:
        rng, bank = self.rng, _BANK[sentiment]
        values = dict(
            forms,
            colour=rng.choice(_COLOURS),
            size=rng.choice(_SIZES),
            body=rng.choice(_BODIES),
            occasion=rng.choice(_OCCASIONS),
        )
        # 1-4 remarks: texts of about 15 to 80 words, most around 30-50.
        remarks = _pick(rng, (1, 2, 3, 4), (0.2, 0.6, 0.9, 1.0))
        out: list[str] = []
        if rng.random() < 0.25:
            out.append(rng.choice(_CONTEXT))
        if rng.random() < 0.9:
            out.append(rng.choice(bank["open"]))
        if transcript is None:
            out.extend(rng.choice(bank[kind]) for kind in rng.sample(_BODY_KINDS, remarks))
        else:  # 2-3 times as many remarks, with the small talk of a call or chat
            pool = _REMARKS[sentiment]
            k = min(round(remarks * self.sc.length_factor_after) + 1, len(pool))
            out.extend(rng.sample(pool, k))
            out.insert(rng.randint(0, len(out)), rng.choice(_TRANSCRIPT_FILLER))
        if rng.random() < 0.12:
            out.append(rng.choice(bank["caveat"]))
        if rng.random() < 0.75 or len(out) < 2:
            out.append(rng.choice(bank["close"]))
        if transcript is not None and transcript in _TRANSCRIPT_OPEN:
            out.insert(0, rng.choice(_TRANSCRIPT_OPEN[transcript]))
            out.append(rng.choice(_TRANSCRIPT_CLOSE))
        sentences = [t.format_map(values) for t in out]
        text = " ".join(sentences)
        while len(text.encode("utf-8")) > self.max_text_bytes and len(sentences) > 1:
            sentences.pop()
            text = " ".join(sentences)
        return text

    # -- malformed records --------------------------------------------------------------------

    def _malformed(self, reason: Reason, doc: dict[str, Any], event: ReviewEvent) -> bytes:
        """The record of ``event`` (``doc``: its JSON document) spoilt as ``reason`` says."""
        doc = dict(doc)
        if reason in _RAW_FAULTS:
            return _RAW_FAULTS[reason](self.bad_rng, doc, event)
        if reason is Reason.OVERSIZE_TEXT:
            doc["review_text"] = self._oversize(event)
        elif reason in _FIELD_FAULTS:
            _FIELD_FAULTS[reason](self.bad_rng, doc, event)
        else:  # MALFORMED_REASONS lists the reasons above
            raise ValueError(f"cannot make a malformed record for {reason}")
        return encode_record(doc)

    def _oversize(self, event: ReviewEvent) -> str:
        """A text just over the limit: a rambling review, or one padded with emoji so that
        it is within the limit in characters but not in UTF-8 bytes."""
        limit, text = self.max_text_bytes, event.review_text
        if self.bad_rng.random() < 0.5:
            pad = "\U0001f60d"  # 4 bytes in UTF-8, one character
            n = (limit - len(text.encode("utf-8")) - 1) // 4 + 1 + self.bad_rng.randint(0, 20)
            return f"{text} {pad * n}"
        parts = [text]
        size = len(text.encode("utf-8"))
        while size <= limit:
            parts.append(text)
            size += len(text.encode("utf-8")) + 1
        return " ".join(parts)


# -- malformed records ----------------------------------------------------------------------
# Each function spoils one valid document, drawing from the generator's ``bad_rng``; those of
# _RAW_FAULTS return the bytes a producer sends, those of _FIELD_FAULTS change the document
# in place (it is then encoded as usual).


def _not_json(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> bytes:
    good = json.dumps(doc, ensure_ascii=False)
    variant = r.randrange(4)
    if variant == 0:  # cut off in transit
        return good[: r.randint(1, len(good) - 1)].encode("utf-8")
    if variant == 1:  # a Python repr instead of JSON
        return repr(doc).encode("utf-8")
    if variant == 2:  # two records in one message
        return f"{good}\n{good}".encode()
    return b""


def _bad_utf8(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> bytes:
    marker = "\u00a7BAD\u00a7"
    doc["review_text"] = f"{event.review_text} {marker}"
    raw = encode_record(doc)
    bad = (b"caf\xe9", b"\xff\xfe", b"\xf0\x9f\x98", b"\xc3\x28")[r.randrange(4)]
    return raw.replace(marker.encode("utf-8"), bad)


def _not_object(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> bytes:
    variant = r.randrange(4)
    if variant == 0:
        return encode_record([doc])
    if variant == 1:
        return str(event.rating).encode()
    if variant == 2:
        return json.dumps(event.review_text).encode()
    return b"null"


def _duplicate_field(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> bytes:
    """A field repeated, as a hand-rolled encoder might write it."""
    name = r.choice(("review_id", "product_category", "channel", "event_time"))
    first = json.dumps({name: doc[name]}, ensure_ascii=False)[:-1]
    return f"{first}, {json.dumps(doc, ensure_ascii=False)[1:]}".encode()


def _missing_field(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    name = r.choice(
        ("review_id", "product_id", "product_category", "review_text", "channel",
         "event_time")
    )  # fmt: skip
    if r.random() < 0.7:
        del doc[name]
    else:
        doc[name] = None


def _wrong_type(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    variant = r.randrange(6)
    if variant == 0:
        words = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
        doc["rating"] = words[event.rating or 5]
    elif variant == 1:
        doc["product_id"] = int(event.product_id.rsplit("-", 1)[1])
    elif variant == 2:
        doc["review_text"] = event.review_text.split(". ")
    elif variant == 3:
        doc["event_time"] = int(event.event_time.timestamp())
    elif variant == 4:
        doc["rating"] = float(event.rating or 5)
    else:
        doc["channel"] = [event.channel]


def _invalid_value(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    variant = r.randrange(5)
    if variant == 0:
        doc["channel"] = r.choice(("fax", "in-store", "WEB", "sms", ""))
    elif variant == 1:
        doc["rating"] = r.choice((0, 6, 7, 10, -1))
    elif variant == 2:
        doc["review_text"] = r.choice(("", "   ", "\n"))
    elif variant == 3:
        doc["review_id"] = ""
    else:
        doc["product_category"] = " "


def _bad_timestamp(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    naive = event.event_time.replace(tzinfo=None)
    doc["event_time"] = r.choice(
        (
            "yesterday",
            naive.isoformat(timespec="milliseconds"),
            naive.isoformat(sep=" ", timespec="seconds"),
            naive.strftime("%d/%m/%Y %H:%M:%S +0000"),
            naive.strftime("%Y-%m-%dT25:%M:%SZ"),
        )
    )


def _unsupported_version(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    doc["schema_version"] = r.choice((99, 2, 0, "1"))


def _oversize_record(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    """Unknown fields over the default limits: too many, or too large."""
    if r.random() < 0.5:
        doc.update({f"attribute_{k:02d}": k for k in range(40)})
    else:
        doc["attachment"] = "=" * 20_000


def _time_out_of_range(r: random.Random, doc: dict[str, Any], event: ReviewEvent) -> None:
    doc["event_time"] = r.choice(
        (
            "9999-12-31T23:59:59Z",
            (event.event_time + timedelta(days=3653)).isoformat(),
            "1970-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
        )
    )


_RAW_FAULTS: Final[
    Mapping[Reason, Callable[[random.Random, dict[str, Any], ReviewEvent], bytes]]
] = {
    Reason.NOT_JSON: _not_json,
    Reason.BAD_UTF8: _bad_utf8,
    Reason.NOT_OBJECT: _not_object,
    Reason.DUPLICATE_FIELD: _duplicate_field,
}
_FIELD_FAULTS: Final[
    Mapping[Reason, Callable[[random.Random, dict[str, Any], ReviewEvent], None]]
] = {
    Reason.MISSING_FIELD: _missing_field,
    Reason.WRONG_TYPE: _wrong_type,
    Reason.INVALID_VALUE: _invalid_value,
    Reason.BAD_TIMESTAMP: _bad_timestamp,
    Reason.UNSUPPORTED_VERSION: _unsupported_version,
    Reason.OVERSIZE_RECORD: _oversize_record,
    Reason.EVENT_TIME_OUT_OF_RANGE: _time_out_of_range,
}
