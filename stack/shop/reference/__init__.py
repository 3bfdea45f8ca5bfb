"""Reference solutions of the exercises: what earlier labs' stages run with.

Each file here is the same code as the solution cell of its notebook (a test keeps
them equal), so a stack for lab N runs labs 1..N-1 exactly as the solutions wrote them.
"""
