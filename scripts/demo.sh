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
echo "running: bin/ebbflow local --data-dir $dir/cluster --fresh --taskmanagers 2 --slots 2 wordcount --input $input --output $dir/output"
bin/ebbflow local --data-dir "$dir/cluster" --fresh --taskmanagers 2 --slots 2 \
	wordcount --input "$input" --output "$dir/output"
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
