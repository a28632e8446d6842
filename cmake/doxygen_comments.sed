# Doxygen input filter for ember's headers, whose comments are plain `//` (house style).
# It turns them into Doxygen comments for the API reference only; the sources are not
# changed. The comment block at the top of a file documents the file; a comment on its
# own line documents what follows; a comment after `;`, `,` or `{` documents what it
# follows (///<); section rules (`// ---`) stay plain comments.
1,/^[^/]/{
  1s|^// |/// @file\n/// |
  s|^// |/// |
  s|^//$|///|
}
/^[[:space:]]*\/\/ *---/b
s#^\([[:space:]]*\)//\( \|$\)#\1///\2#
s|\([;,{]\)\([[:space:]]*\)// |\1\2///< |
# In those comments, <name> placeholders and #words are text, not HTML tags and links.
/\/\/\//{
  s/<\([A-Za-z_][A-Za-z_0-9 ]*\)>/\\<\1\\>/g
  s/#\([A-Za-z]\)/\\#\1/g
}
