"""What a delivery needs on its way out: signing, secrets at rest, the retry policy, the SSRF
guard and the egress proxy. Pure or I/O-light; imports no other subpackage.
"""
