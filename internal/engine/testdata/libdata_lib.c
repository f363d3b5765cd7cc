/* A library with an exported global that the program never uses. */
int libdata_hits;
