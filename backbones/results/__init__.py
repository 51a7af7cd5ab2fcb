"""Results: run records, the leaderboard, Tables 2 and 3, the plot, and the main job."""
