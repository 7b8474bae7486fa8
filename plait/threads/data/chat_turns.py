"""The chat turns of stage-1 data generation (`datagen.py`): prompt texts, plain str.format.

The structure chat has six turns; only the last answer is parsed, so each turn builds on the
previous answers in the same conversation.
"""

from __future__ import annotations

STRUCTURE_TURNS: tuple[str, ...] = (
    # 1) main steps
    "Below is a reasoning trace with numbered lines.\n\n{trace}\n\n"
    "Task 1. Split the whole trace into main steps S1, S2, ... Each step is a contiguous range of "
    "lines (e.g. S1: L1-L4). The ranges must cover every line exactly once, dead ends included.",
    # 2) substeps
    "Task 2. Where a main step has clearly separate parts, split it into substeps Sx.y with line "
    "ranges (at most two levels).",
    # 3) parallel groups of main steps
    "Task 3. Find groups of ADJACENT main steps that do not depend on each other, so they could be "
    "worked on at the same time. Write the dependencies first, then the groups, e.g. "
    "P: Parallel(S2, S3). Independent cases, separate checks and a check that can run next to the "
    "following steps are good candidates; understanding the problem never is.",
    # 4) parallel groups of substeps
    "Task 4. Do the same for substeps, only inside main steps that are not already in a group.",
    # 5) serialise
    "Task 5. Write the result as XML. For each group write <Parallel> then one <Thread>...</Thread> "
    "per member, then </Parallel>. Right after each </Thread> write its line range as "
    "(range: La-Lb). No nesting; avoid very unequal threads.",
    # 6) self-check
    "Task 6. Check every thread: could it be written without seeing its sibling threads? Mark each "
    "'check passed' or 'check failed', fix the failures by regrouping, and then output the final "
    "XML again in the same format.",
)

REFERENCE_PROMPT = (
    "A reasoning trace is being split into threads that are written at the same time. The thread "
    "below may only rely on the ALLOWED context, not on the FORBIDDEN one (a sibling thread it "
    "will not see).\n\nALLOWED:\n{allowed}\n\nFORBIDDEN:\n{forbidden}\n\nTHREAD:\n{thread}\n\n"
    'Return a JSON list of minimal edits [{{"src": "exact text in THREAD", "dest": '
    '"replacement"}}] that remove every reference to the FORBIDDEN context (phrases such as '
    "'as computed above', symbols defined only there). Change as little as possible; return [] if "
    "nothing refers to it."
)

OUTLINE_PROMPT = (
    "Context before a parallel section of a reasoning trace:\n{context}\n\n"
    "The section has {n} threads:\n{threads}\n\n"
    "Write one outline per thread, as lines '1: ...', '2: ...', each one or two sentences saying "
    "what the thread will do. Use only what the context already knows: never state a thread's "
    "result."
)
