"""The course wing: what exists to teach a lesson or to measure something for one.

Nothing in here is needed to train your own model; ``labkit`` (the core wing, one level up) is. The rule
that keeps the two apart: **the course imports the core; the core never imports the course**
(`tests/test_layout.py` walks every import and fails on a core → course one). A helper that a user's own
training script would want belongs in the core; a helper that only makes a lesson clearer belongs here.

=========================  ==================================================================  ==========
module                     what it is for                                                      notebooks
=========================  ==================================================================  ==========
``toy``                    a handful of 2-D points: one gradient step, movement tables, plots    04–08
``toy_pairs``              the same for pair losses: pairs as lines, pair movement               04, 06
``toy_triplets``           the same for triplet losses; batch-hard timed against the article     05
``playground``             the loss playground's logic (a point cloud, any loss, N steps)       08
``loss_lab``               the playground's ipywidgets front end                               08
``batch_composition``      what a sampler hands a batch loss: triplet counts, epoch reports      02
``padding_cost``           token lengths, padded positions, tokenizer/model timings              01
``article``                the original article's dataset, sampler, loss and training loop       02, 05, 12
``recipes``                notebook 09's training recipe as one function, with a model cache     09, 10
``compare``                several losses on one budget, fairly                                  11
``clusters``               which classes an embedding confuses, with which texts                 10
``scaling``                peak memory against batch size (MNRL, GradCache); fp16 overflow       13
``exercises``              the checkers of every notebook's exercises, one module per notebook   all
                           (``exercises.solutions``: the answers, for an instructor)
``colab``                  each notebook's first cell and the Colab links, from one URL          all
``workshop``               student copies of the notebooks, and the course bundle (a zip)        all
=========================  ==================================================================  ==========
"""
