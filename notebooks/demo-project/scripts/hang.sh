#!/usr/bin/env bash
# Hangs forever, and leaves a grandchild behind: what a timeout is for.
echo "waiting for a lock that never comes ..."
sleep 86399 &   # a background grandchild, to show the whole tree is killed
sleep infinity
