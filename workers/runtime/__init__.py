"""Code that runs ON provider nodes, plus the job-kind registry both sides share. No Django here."""
