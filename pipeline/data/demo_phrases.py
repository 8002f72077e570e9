"""Phrase pools for the synthetic demo reviews (see :mod:`pipeline.data.demo_data`).

Every sentence here was written for tastebud's demo; the data is clearly synthetic.
Keys are the latent sentiment a sentence expresses. ``{dish}`` is filled from DISHES.
"""

from __future__ import annotations

NEIGHBORHOODS: tuple[str, ...] = (
    "Midtown", "Inman Park", "Old Fourth Ward", "Little Five Points", "Decatur", "West Midtown",
    "Buckhead", "Grant Park", "Kirkwood", "East Atlanta Village", "Virginia-Highland", "Poncey-Highland",
    "Cabbagetown", "Reynoldstown", "Castleberry Hill", "Sweet Auburn",
)  # fmt: skip

# (name, neighborhood, P(positive experience)) — the quality drives the latent sentiment mix.
RESTAURANTS: tuple[tuple[str, str, float], ...] = (
    ("Magnolia Table", "Inman Park", 0.78),
    ("Peachtree Smokehouse", "Midtown", 0.70),
    ("Ponce Noodle Bar", "Poncey-Highland", 0.74),
    ("Sweet Auburn Biscuit Co.", "Sweet Auburn", 0.82),
    ("The Velvet Okra", "Old Fourth Ward", 0.66),
    ("Little Five Taqueria", "Little Five Points", 0.72),
    ("Decatur Square Bistro", "Decatur", 0.69),
    ("Westside Forge", "West Midtown", 0.63),
    ("Buckhead Prime", "Buckhead", 0.71),
    ("Grant Park Pho", "Grant Park", 0.76),
    ("Kirkwood Kitchen", "Kirkwood", 0.68),
    ("EAV Hot Chicken", "East Atlanta Village", 0.73),
    ("Highland Oyster House", "Virginia-Highland", 0.67),
    ("Cabbagetown Diner", "Cabbagetown", 0.58),
    ("Reynoldstown Ramen", "Reynoldstown", 0.75),
    ("Castleberry Cantina", "Castleberry Hill", 0.60),
    ("Old Fourth Pizza Works", "Old Fourth Ward", 0.77),
    ("Midtown Mezze", "Midtown", 0.70),
    ("The Dogwood Grill", "Buckhead", 0.55),
    ("Inman Park Patisserie", "Inman Park", 0.84),
    ("BeltLine Burger Shack", "Old Fourth Ward", 0.62),
    ("Candler Curry House", "Decatur", 0.72),
    ("Southern Fried Social", "West Midtown", 0.64),
    ("Georgia Pine Tavern", "Kirkwood", 0.57),
)

# The scripted events a dashboard should reveal.
COLLAPSE_RESTAURANT = "Magnolia Table"
FOOD_HALL = "Krog District"
FOOD_HALL_NEIGHBORHOOD = "Inman Park"

DISHES: tuple[str, ...] = (
    "shrimp and grits", "fried chicken", "brisket", "pimento cheese", "collard greens", "biscuits",
    "banana pudding", "pho", "tonkotsu ramen", "al pastor tacos", "margherita pizza", "smash burger",
    "oysters", "lamb shawarma", "peach cobbler", "hot chicken sandwich", "mac and cheese", "chicken curry",
    "fish tacos", "pulled pork", "croissants", "falafel plate", "steak frites", "vegetable dumplings",
)  # fmt: skip

OPENERS: dict[str, tuple[str, ...]] = {
    "positive": (
        "Absolutely loved this place.", "What a find!", "We come here every other week and it never disappoints.",
        "Best meal I've had in Atlanta this year.", "Five stars, no hesitation.", "This spot is a gem.",
        "Came in on a whim and left very happy.", "My go-to for date night.", "Finally a place that lives up to the hype.",
        "Brought my parents here and they are still talking about it.", "Such a great neighborhood spot.",
        "I keep telling everyone about this place.",
    ),
    "neutral": (
        "It was fine.", "Decent spot, nothing special.", "Pretty average experience overall.",
        "Mixed feelings about this one.", "Not bad, not great.", "It's okay for a quick bite.",
        "Solid enough, but I won't rush back.", "Middle of the road.", "We had an okay time.",
        "Some hits, some misses.",
    ),
    "negative": (
        "Really disappointed.", "I wanted to like this place.", "Never again.", "What a letdown.",
        "Save your money.", "This used to be good.", "I don't understand the hype.",
        "Worst dinner we've had in a while.", "Not worth the trip.", "Two words: skip it.",
    ),
}

FOOD: dict[str, tuple[str, ...]] = {
    "positive": (
        "The {dish} was perfectly seasoned.", "The {dish} is the best in town.", "Their {dish} is worth the drive alone.",
        "Every bite of the {dish} was incredible.", "The {dish} came out hot and full of flavor.",
        "Get the {dish}, you won't regret it.", "The {dish} was fresh and generous.",
    ),
    "neutral": (
        "The {dish} was okay.", "The {dish} was fine but a little bland.", "The {dish} was decent for the price.",
        "The {dish} was good, the sides less so.", "I've had better {dish}, but also worse.",
        "The {dish} was standard.",
    ),
    "negative": (
        "The {dish} was cold and greasy.", "The {dish} tasted like it had been sitting out for hours.",
        "The {dish} was dry and overpriced.", "The {dish} was inedible.", "My {dish} was undercooked.",
        "The {dish} had no flavor at all.", "They got the {dish} wrong twice.",
    ),
}

SERVICE: dict[str, tuple[str, ...]] = {
    "positive": (
        "Our server was friendly and quick.", "Service was attentive without hovering.",
        "The staff made us feel right at home.", "Food came out fast even though it was packed.",
        "The bartender had great recommendations.",
    ),
    "neutral": (
        "Service was fine.", "Our server was a bit slow but polite.", "The staff seemed busy but managed.",
        "Nothing to complain about with the service.",
    ),
    "negative": (
        "We waited 45 minutes for our food.", "Service was painfully slow.", "Our server forgot us twice.",
        "Waited forever just to get the check.", "The host ignored us for ten minutes.",
        "Nobody refilled our water the entire meal.", "It took an hour to get our entrees.",
    ),
}

AMBIENCE: dict[str, tuple[str, ...]] = {
    "positive": (
        "The patio is lovely on a warm evening.", "Cozy room and great music.", "Great vibe, perfect for groups.",
        "Beautiful space with lots of natural light.",
    ),
    "neutral": (
        "The room is a little loud.", "Parking can be tricky.", "It's a small space, so expect a wait.",
        "The decor is nothing special.",
    ),
    "negative": (
        "The place was dirty and the tables were sticky.", "So loud we couldn't hear each other.",
        "The bathroom was a mess.", "It was freezing inside.",
    ),
}

# Local references: sentiment-bearing phrases a general-purpose tool does not understand.
LOCAL: dict[str, tuple[str, ...]] = {
    "positive": (
        "Worth braving the Connector traffic for.", "Perfect stop after a walk on the BeltLine.",
        "Better than anything at Ponce City Market.", "An easy walk from the MARTA station, too.",
        "Great spot before a Braves game.",
    ),
    "neutral": (
        "It's right off the BeltLine.", "Parking is like any other spot near Ponce City Market.",
        "About what you'd expect near the MARTA station.",
    ),
    "negative": (
        "The wait was worse than the DMV on Memorial Drive.", "Slower than the Downtown Connector at 5pm.",
        "More chaotic than Ponce City Market on a Saturday.", "Felt like waiting for a MARTA train that never comes.",
    ),
}

CLOSERS: dict[str, tuple[str, ...]] = {
    "positive": (
        "Can't wait to come back.", "Highly recommend.", "We'll be regulars.", "Go, you won't be sorry.",
        "Already planning my next visit.",
    ),
    "neutral": (
        "Might come back if I'm in the area.", "It's fine for what it is.", "Probably a three-star place.",
        "Your mileage may vary.",
    ),
    "negative": (
        "Won't be back.", "Avoid.", "There are better options nearby.", "Really hoping they turn it around.",
        "I'd give zero stars if I could.",
    ),
}

# Sarcastic praise: positive words, negative meaning. These reviews carry low stars.
SARCASM: tuple[str, ...] = (
    "Oh great, another 45-minute wait for lukewarm {dish}. Just what I wanted.",
    "Loved paying twenty dollars for {dish} that tasted like cardboard. Truly a culinary masterpiece.",
    "Fantastic service, if you enjoy being ignored for an hour.",
    "Wow, what a treat: soggy {dish} and a server who vanished. Ten out of ten.",
    "Best {dish} ever, said nobody after eating here.",
    "Amazing how they manage to make {dish} this bland. Impressive, really.",
    "Sure, I love sticky tables and cold {dish}. Perfect date night.",
    "Five-star experience at the DMV on Memorial Drive was quicker than this.",
)

# The service collapse at Magnolia Table.
COLLAPSE: tuple[str, ...] = (
    "Something is very wrong here lately. We waited over an hour and half the menu was unavailable.",
    "New management? Service has fallen apart, nobody knows what table ordered what.",
    "Used to be my favorite brunch. Today: 70 minutes for eggs and no apology.",
    "They seem badly understaffed now. One server for the whole room.",
    "Our order was wrong, then lost, then cold. What happened to this place?",
)

# Krog District, the new food hall: loved for its variety, hated for its crowds.
FOOD_HALL_TEXT: dict[str, tuple[str, ...]] = {
    "positive": (
        "Krog District is amazing: so many stalls, everyone in our group found something they loved.",
        "The variety at Krog District is unreal, from dumplings to tacos to gelato.",
        "Krog District is the best thing to happen to Inman Park. Endless options.",
        "Love the new food hall! Krog District has something for everyone.",
    ),
    "neutral": (
        "Krog District has a lot of choices, but it's hit or miss depending on the stall.",
        "Checked out the new food hall, Krog District. Interesting, will need a few visits to decide.",
        "Krog District: great variety, but expect crowds on weekends.",
    ),
    "negative": (
        "Krog District is a zoo on weekends. Couldn't find a seat anywhere.",
        "The crowds at Krog District are unbearable, waited 30 minutes at every stall.",
        "Krog District is too packed to enjoy, lines everywhere and nowhere to sit.",
        "Great idea, terrible execution: Krog District is overcrowded and loud.",
    ),
}

# Said of Krog District beside its main sentence: praise of the food for reviews that curse the crowds,
# and the crowds for reviews that praise the food (the hall is loved for one and hated for the other).
FOOD_HALL_VARIETY: tuple[str, ...] = (
    "The food itself is great, there is something from every corner of the world.",
    "Every stall we tried was delicious.",
    "The dumplings and the tacos alone are worth it.",
)
FOOD_HALL_CROWDS: tuple[str, ...] = (
    "Go on a weekday: weekends are a crush of people.",
    "Good luck finding a seat at lunch.",
    "It gets so crowded you can barely move between the stalls.",
)

# --- aspects --------------------------------------------------------------------------------------
# What each phrase says about which aspect (SemEval-2014's restaurant categories), so the generator
# knows every review's true aspects from the phrases it joined. A phrase speaks of its pool's aspect
# (POOL_ASPECTS) with the sentiment it is filed under (a flat pool's: FLAT_POOL_SENTIMENT), unless
# ASPECT_TAGS lists it: a food sentence that also complains about the price, a local reference that is
# about the wait, sarcasm about the service.
MISC = "anecdotes/miscellaneous"
POOL_ASPECTS: dict[str, str] = {
    "OPENERS": MISC, "FOOD": "food", "SERVICE": "service", "AMBIENCE": "ambience", "LOCAL": MISC, "CLOSERS": MISC,
    "FOOD_HALL_TEXT": "food", "COLLAPSE": "service", "FOOD_HALL_VARIETY": "food", "FOOD_HALL_CROWDS": "ambience",
}
FLAT_POOL_SENTIMENT: dict[str, str] = {
    "SARCASM": "negative", "COLLAPSE": "negative", "FOOD_HALL_VARIETY": "positive", "FOOD_HALL_CROWDS": "negative",
}
ASPECT_TAGS: dict[str, tuple[tuple[str, str], ...]] = {
    # food sentences that speak of the price too
    "The {dish} was decent for the price.": (("food", "neutral"), ("price", "positive")),
    "The {dish} was dry and overpriced.": (("food", "negative"), ("price", "negative")),
    # local references that are about the wait, the crowd or the place
    "The wait was worse than the DMV on Memorial Drive.": (("service", "negative"),),
    "Slower than the Downtown Connector at 5pm.": (("service", "negative"),),
    "Felt like waiting for a MARTA train that never comes.": (("service", "negative"),),
    "More chaotic than Ponce City Market on a Saturday.": (("ambience", "negative"),),
    "Better than anything at Ponce City Market.": (("food", "positive"),),
    "Parking is like any other spot near Ponce City Market.": (("ambience", "neutral"),),
    # sarcasm: negative about what it pretends to praise
    "Oh great, another 45-minute wait for lukewarm {dish}. Just what I wanted.":
        (("service", "negative"), ("food", "negative")),
    "Loved paying twenty dollars for {dish} that tasted like cardboard. Truly a culinary masterpiece.":
        (("price", "negative"), ("food", "negative")),
    "Fantastic service, if you enjoy being ignored for an hour.": (("service", "negative"),),
    "Wow, what a treat: soggy {dish} and a server who vanished. Ten out of ten.":
        (("food", "negative"), ("service", "negative")),
    "Best {dish} ever, said nobody after eating here.": (("food", "negative"),),
    "Amazing how they manage to make {dish} this bland. Impressive, really.": (("food", "negative"),),
    "Sure, I love sticky tables and cold {dish}. Perfect date night.": (("ambience", "negative"), ("food", "negative")),
    "Five-star experience at the DMV on Memorial Drive was quicker than this.": (("service", "negative"),),
    # the food hall: its variety is the food, its crowds the place
    "Krog District: great variety, but expect crowds on weekends.": (("food", "positive"), ("ambience", "negative")),
    "Checked out the new food hall, Krog District. Interesting, will need a few visits to decide.": ((MISC, "neutral"),),
    "Krog District is a zoo on weekends. Couldn't find a seat anywhere.": (("ambience", "negative"),),
    "The crowds at Krog District are unbearable, waited 30 minutes at every stall.":
        (("ambience", "negative"), ("service", "negative")),
    "Krog District is too packed to enjoy, lines everywhere and nowhere to sit.": (("ambience", "negative"),),
    "Great idea, terrible execution: Krog District is overcrowded and loud.": (("ambience", "negative"),),
}


def phrase_aspects(pool: str, template: str, sentiment: str | None = None) -> tuple[tuple[str, str], ...]:
    """The (aspect, polarity) pairs a phrase of ``pool`` speaks of (``sentiment``: the key it is filed
    under; flat pools have their own).

    Example:
        >>> phrase_aspects("FOOD", "The {dish} was dry and overpriced.", "negative")
        (('food', 'negative'), ('price', 'negative'))
        >>> phrase_aspects("SERVICE", "Service was fine.", "neutral")
        (('service', 'neutral'),)
    """
    if template in ASPECT_TAGS:
        return ASPECT_TAGS[template]
    polarity = FLAT_POOL_SENTIMENT.get(pool, sentiment)
    if pool not in POOL_ASPECTS or polarity is None:
        raise KeyError(f"phrase of pool {pool} has no aspect tag: {template!r}")
    return ((POOL_ASPECTS[pool], polarity),)
