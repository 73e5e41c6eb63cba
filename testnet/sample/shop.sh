#!/bin/sh
# The application: it greets and says which version it is.
echo "shop @VERSION@: hello, $1"
