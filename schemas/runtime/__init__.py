"""What every process shares at run time: broker-outage backoff, topic creation, heartbeats.

These talk to Kafka or the data dir, so they are not the contract itself, but they import
nothing of ours above schemas/.
"""
