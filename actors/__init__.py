"""Ray actors and their plain logic: the order-fixed tree reduction.

`OrderedReducer` (`ordered`) holds the logic and imports no Ray; `ReductionActor` (`reduction`) is
its thin `ray.remote` wrapper. `tree.plan_chunks` cuts sorted keys into consecutive chunks; `protocols`
states what the science side implements (partials, accumulators, task functions); `refs` fetches a
batch of results telling which failed. Import the submodules directly: importing this package
imports neither Ray nor any of them.
"""
