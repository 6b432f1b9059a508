"""Demo org and transcripts, shipped as package data so `collabbot console` runs with no files of its own."""
