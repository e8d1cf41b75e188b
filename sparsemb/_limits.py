"""Bounds that more than one layer needs (the kernels, the trainer, the command line).

No imports: the command line reads these before anything heavy is loaded.
"""

#: gensim's ``MAX_WORDS_IN_BATCH``: longer lines are cut into sentences of this many tokens.
MAX_SENTENCE_LENGTH = 10000

#: A context window wider than the longest sentence reaches nothing more.
MAX_WINDOW = MAX_SENTENCE_LENGTH

#: Noise words per example. Each costs a row update; word2vec's authors recommend 5-20, and at 100,000
#: a single epoch of a small corpus runs for minutes.
MAX_NEGATIVE = 1000
