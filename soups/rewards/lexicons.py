"""Word lists for the rule rewards, written for this project (lowercase; phrases match on word
boundaries). Kept small and readable: each list is a signal a scorer counts, not a classifier."""

from __future__ import annotations

FUNCTION_WORDS = frozenset(
    """a an the and or but nor so yet if then than that this these those there here of in on at by for
    with from to into onto over under about above below between through during before after as like
    is are was were be been being am do does did done have has had having will would shall should can
    could may might must not no it its it's itself i me my mine we us our ours you your yours yourself
    he him his she her hers they them their theirs who whom whose which what when where why how all
    any each every some such both either neither one other another own same very too also just only
    up down out off again once more most much many few less least i'm you're we're they're isn't
    aren't don't doesn't didn't can't won't that's there's let's i've you've we've i'll you'll
    because while although though since unless until whether per via upon within without across along
    among around behind beyond near toward towards against despite instead rather even still often
    well back away now later soon never always ever here's what's it'll he's she's""".split()
)

# padding a concise answer does without
FILLER_PHRASES = (
    "i hope this helps", "hope this helps", "in conclusion", "it is important to note", "it's important to note",
    "it is worth noting", "it's worth noting", "as an ai", "as a language model", "basically", "essentially",
    "in summary", "to summarize", "to sum up", "let me know if", "feel free to", "great question",
    "i'd be happy to", "i would be happy to", "additionally", "furthermore", "moreover", "needless to say",
    "at the end of the day", "all in all", "in other words", "that being said", "having said that",
    "as mentioned", "as i mentioned", "generally speaking", "in general", "overall", "of course",
)

# background, causes, examples: the connective tissue of an informative answer
EXPLANATION_MARKERS = (
    "because", "since", "therefore", "thus", "for example", "for instance", "such as", "e.g.", "i.e.",
    "which means", "this means", "in other words", "known as", "called", "refers to", "defined as",
    "originally", "history", "historically", "first", "second", "third", "finally", "background",
    "due to", "as a result", "this is why", "the reason", "in contrast", "however", "whereas",
    "including", "consists of", "depends on", "caused by", "leads to", "compared to", "invented",
    "discovered", "developed", "century", "research", "studies", "typically", "usually", "step",
)

# technical vocabulary across fields (science, medicine, computing, maths, economics, cooking science)
JARGON = frozenset(
    """algorithm asymptotic axiom bayesian bijective canonical catalysis catalyst coefficient
    combinatorial conjecture convolution covariance derivative differential discrete eigenvalue
    eigenvector empirical entropy epistemic equilibrium ergodic estimator heuristic homomorphism
    hypothesis isomorphism lemma manifold markov matrix metric monotonic nonlinear orthogonal
    parameter parametric polynomial posterior prior probabilistic quantum regression scalar
    stochastic tensor theorem topology variance vector latency throughput concurrency compiler
    kernel protocol serialization idempotent deterministic polymorphism recursion invariant
    abstraction architecture bandwidth cache cryptographic hash asynchronous mutex semaphore enzyme
    protein genome genotype phenotype allele mitochondria mitochondrial metabolism metabolic
    receptor ligand neuron synaptic cortex cortical pathology etiology prognosis pharmacokinetics
    pharmacological inflammation antibody antigen cytokine immunological peptide polymer isotope
    electron photon quark boson fermion thermodynamic thermodynamics kinetic oxidation reduction
    molecule molecular covalent ionic catalytic spectroscopy wavelength frequency amplitude
    resonance momentum inertia torque viscosity diffusion osmosis photosynthesis chlorophyll
    macroeconomic microeconomic elasticity monetary fiscal inflationary arbitrage liquidity equity
    derivative hegemony historiography epistemology ontology phenomenology semantics syntax
    morphology phonology pragmatics hermeneutics paradigm methodology quantitative qualitative
    longitudinal cohort confounding causal statistical significance gluten emulsion emulsifier
    maillard caramelization denaturation gelatinization fermentation hydrolysis biochemical
    physiological neurological cardiovascular endocrine glycemic insulin lipid triglyceride
    cholesterol homeostasis circadian vasodilation hypertrophy aerobic anaerobic""".split()
)

# suffixes typical of Latinate/technical words (counted on words of 7+ letters)
JARGON_SUFFIXES = (
    "ization", "isation", "ology", "ological", "ometry", "ography", "ism", "istic", "itive", "ative",
    "ivity", "icity", "tion", "sion", "ance", "ence", "ancy", "ency", "ity", "ical", "ic", "ous", "ive",
    "ize", "ise", "ase", "ide", "ate", "ene", "osis", "esis", "itis", "ium", "metric", "genic", "philic",
    "phobic", "morphic", "tropic", "nomial", "lytic", "kinetic", "static", "dynamic",
)

# warmth, friendliness, enthusiasm
WARM = (
    "glad", "happy", "love", "lovely", "awesome", "great", "fantastic", "wonderful", "friend", "buddy",
    "pal", "hey", "hi", "cheers", "enjoy", "fun", "exciting", "excited", "delight", "delightful",
    "yay", "hooray", "sweet", "cool", "amazing", "hug", "smile", "welcome", "totally", "absolutely",
    "good luck", "you've got this", "you got this", "no worries", "my friend", "trust me", "promise",
    "high five", "fingers crossed", "you're going to", "can't wait", "oh boy", "oh man", "wow",
    "proud of you", "rooting for you", "brilliant", "super", "thrilled", "best", "honestly",
)

# humour and playfulness, written without emoji
HUMOUR = (
    "haha", "hahaha", "hehe", "lol", "joke", "kidding", "just kidding", "pun", "pun intended", "funny",
    "silly", "imagine", "picture this", "fun fact", "spoiler", "plot twist", "wink", ";)", ":)", ":d",
    "like a boss", "no pressure", "drumroll", "ta-da", "tada", "true story", "secret", "sneaky",
    "hilarious", "goofy", "cheesy", "nerd", "geek", "party", "superhero", "ninja", "wizard", "magic",
)

# curt, dismissive, condescending (no slurs or threats: rude, not abusive)
DISMISSIVE = (
    "obviously", "whatever", "duh", "seriously", "ugh", "clearly", "just google", "google it",
    "look it up", "figure it out", "not my problem", "i don't care", "who cares", "waste of time",
    "stupid", "pointless", "annoying", "lazy", "basic", "trivial", "useless", "ridiculous",
    "nonsense", "deal with it", "get it", "if you must", "as anyone knows", "even a child",
    "do your own", "stop asking", "don't bother", "simple enough", "not rocket science", "fine.",
    "no.", "next.", "moving on", "enough", "as i said", "already told", "can't be bothered",
    "bother", "tedious", "honestly?", "of course not", "not hard", "it's not hard", "try harder",
    "pay attention", "read the manual", "rtfm", "come on", "really?", "big deal", "so what",
    "your problem", "get over it", "grow up", "spare me", "sigh", "meh", "boring", "exhausting",
)

# politeness and warmth an unfriendly answer leaves out
POLITE = (
    "please", "thank", "thanks", "glad", "happy to", "hope", "sorry", "great question", "good question",
    "love", "wonderful", "enjoy", "kindly", "appreciate", "my pleasure", "friend", "welcome",
)
