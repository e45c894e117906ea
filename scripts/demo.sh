#!/usr/bin/env bash
# make demo: generate a text corpus, count its words with `ebbflow local`
# (embedded etcd, 2 TaskManagers x 2 slots, checkpoints every second in a
# local folder), check the committed output, and show the top words.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-demo-data}
mkdir -p "$dir"
input="$dir/input.txt"
if [ ! -s "$input" ]; then
	echo "generating $input (1,000,000 lines) ..."
	go run ./scripts/gentext -out "$input" -lines 1000000
fi
rm -rf "$dir/output"
# While it runs: at 3s a TaskManager with 2 slots joins (planned scale-up
# through a stop-with-savepoint), at 7s the newest one drains (as on
# SIGTERM), at 11s the newest left is killed (as with kill -9).
scenario="3s:add:2,7s:drain,11s:kill"
echo "running: bin/ebbflow local --data-dir $dir/cluster --fresh --taskmanagers 2 --slots 1 --scenario $scenario wordcount --input $input --output $dir/output --rate 70000"
bin/ebbflow local --data-dir "$dir/cluster" --fresh --taskmanagers 2 --slots 1 --scenario "$scenario" \
	wordcount --input "$input" --output "$dir/output" --rate 70000
echo
echo "checking the committed output: each word w seen n times must have exactly the lines w<TAB>1 .. w<TAB>n"
LC_ALL=C cat "$dir"/output/part-* | awk -F'\t' '
	{ seen[$0]++; if ($2 > max[$1]) max[$1] = $2; lines++ }
	END {
		bad = 0
		for (l in seen) if (seen[l] > 1) { bad++; if (bad < 4) print "duplicated: " l }
		for (w in max) { total += max[w]; for (k = 1; k <= max[w]; k++) if (!((w "\t" k) in seen)) { bad++; if (bad < 4) print "missing: " w "\t" k } }
		printf "%d lines, %d distinct words: %s\n", lines, length(max), (bad == 0 && total == lines) ? "exactly once" : "NOT exactly once"
		exit (bad == 0 && total == lines) ? 0 : 1
	}'
echo
echo "top 10 words:"
LC_ALL=C cat "$dir"/output/part-* | awk -F'\t' '$2 > max[$1] { max[$1] = $2 } END { for (w in max) printf "%10d  %s\n", max[w], w }' | sort -rn | awk 'NR <= 10'
