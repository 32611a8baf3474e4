"""Code shared by the three pipeline functions.

Packaged into every function's bundle by `collections build`; on the local cloud it is on the
path of the process that invokes the handlers. It must import nothing heavy at module level:
a Lambda pays for every import on each cold start.
"""
