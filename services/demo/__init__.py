"""``zeroerrand demo``: a simulated year of the service, end to end, on the running system.

``agreements`` makes a year of investment agreements from the catalog; ``simulation`` decides what
the departments, 政联公司, 经发局 and the enterprises do with each routed item and when; ``run``
signs, sends their requests to the ledger day by day, sweeps for overdue items, submits the 测评
and writes the annual report.
"""
