from curator.labeling.heuristic.corpus import main

main()
