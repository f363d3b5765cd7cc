/* An allocated note before .text: removing it renumbers the sections after it (as dh_strip does with .note). */
__attribute__((section(".note.hp"), used, aligned(4))) static const int hpnote[4] = {0, 0, 1, 0};
